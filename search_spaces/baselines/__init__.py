"""Shipped baselines files (`autopeft baselines RUN --file standard`)."""
