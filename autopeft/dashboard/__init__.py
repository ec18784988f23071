"""The Pareto dashboard: plot data, figures, the page, the live server, and the run files rewritten from a study.
"""
