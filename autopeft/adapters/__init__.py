"""Stage 2, adapters: a candidate resolved against a concrete model (architectures, the space fitted to the model),
peft configs, materialisation, sparsity masks and the exact cost model.
"""
