"""autopeft as a service: searches submitted, watched, stopped and exported over HTTP (`autopeft serve`)."""
