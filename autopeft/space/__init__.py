"""Stage 1, the search space: YAML parsed into a typed spec, the candidates a sampler's trial makes of it, the
methods and module presets it may name, and what it contains in words.
"""
