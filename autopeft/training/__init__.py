"""Stage 3, training: tasks and their data, the training loop, the peak-memory measurement, and one trial from a
request to a result.
"""
