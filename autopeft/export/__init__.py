"""Stage 5, export: choosing trials, writing ready-to-use peft folders, retraining and confirming over seeds,
baselines.
"""
