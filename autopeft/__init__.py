"""autopeft: multi-objective search over parameter-efficient fine-tuning configurations."""

__version__ = "0.1.0"
