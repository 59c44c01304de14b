"""Loaders, configuration, the synthetic data generator and the ``lookalike`` CLI."""

__all__ = ["__version__"]
__version__ = "0.2.0"
