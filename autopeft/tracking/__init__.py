"""Experiment trackers (`--track`): a search logged to MLflow, TensorBoard or W&B (offline) as it goes.

The search's driver logs, from the study: after every trial the search loop reports (`SearchTracking.update`), what
the tracker has not been sent yet goes to it (a trial's new rungs and loss points, its end), then the run's files.
Ray workers need nothing. `tracking.json` in the run directory keeps the tracker's ids (MLflow's parent run, each
trial's nested run) and what each was sent, so a resumed search continues the same runs and sends only what is new.
A tracker that fails is one warning line, and the search goes on without it (`search.SearchTracking`).

- `ledger`: tracking.json; `updates`: a trial's record -> what is new for the tracker; `base`: the interface a
  tracker implements; `mlflow_runs`, `tensorboard_files`, `wandb_offline`: the three trackers; `search`: the one
  object the search uses; `resolve`: `--track` checked and resolved before a search starts; `export`: an exported
  folder logged to its trial's run.
"""
