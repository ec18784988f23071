"""The run directory: settings, the study database, the results table and Pareto fronts made from it.
"""
