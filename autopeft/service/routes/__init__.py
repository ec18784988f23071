"""The service's routes, one module per concern: searches, their dashboards, and the pages for a browser."""
