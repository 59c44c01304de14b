"""The stages and everything that touches files or the command line.

``pipeline.stages`` (one module per stage), the ``lookalike`` CLI, typed
settings, the model registry, the train stage's design and tasks, artifacts,
reports, Dask dispatch, the readers of the raw files and the synthetic data
generator. The top layer: it imports ``features``, ``ensemble`` and ``core``;
none of them imports it (README, "Architecture").
"""

__all__ = ["__version__"]
__version__ = "0.4.0"
