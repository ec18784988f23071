"""autopeft's multi-objective Bayesian optimisation sampler: encoding, GP model, acquisition, candidate search.
"""
