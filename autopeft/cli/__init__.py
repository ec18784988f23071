"""The `autopeft` command: a thin layer over the Python API (`autopeft.api`).
"""
