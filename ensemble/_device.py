"""Which LightGBM device to train on: ``auto | cpu | gpu | cuda``."""

from __future__ import annotations

import functools
import logging

import lightgbm as lgb
import numpy as np

__all__ = ["DEVICES", "resolve_device"]

logger = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "gpu", "cuda")


@functools.lru_cache(maxsize=None)
def _works(device: str) -> bool:
    """Whether this LightGBM build trains on ``device`` (a 3-round smoke test)."""
    rng = np.random.default_rng(0)
    X = rng.random((200, 4))
    y = (X[:, 0] > 0.5).astype(int)
    try:
        lgb.train(
            {"objective": "binary", "device_type": device, "verbose": -1, "num_threads": 1},
            lgb.Dataset(X, y),
            num_boost_round=3,
        )
    except lgb.basic.LightGBMError as exc:
        logger.debug("LightGBM device %r unavailable: %s", device, exc)
        return False
    return True


@functools.lru_cache(maxsize=None)
def resolve_device(requested: str) -> str:
    """The device to use for ``requested``.

    ``auto`` picks ``cuda``, then ``gpu`` (OpenCL, in the PyPI wheel), then
    ``cpu``, whichever trains first, and logs the choice. An explicit ``gpu``
    or ``cuda`` that does not work is an error, not a silent fallback.
    """
    if requested not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {requested!r}")
    if requested == "cpu":
        return "cpu"
    if requested == "auto":
        for device in ("cuda", "gpu"):
            if _works(device):
                logger.info("device auto: training on LightGBM %r", device)
                return device
        logger.info("device auto: no working GPU backend in this LightGBM; training on the CPU")
        return "cpu"
    if not _works(requested):
        raise ValueError(
            f"LightGBM cannot train on device {requested!r} here (no GPU, or a build without it); "
            "use device = \"auto\" or \"cpu\""
        )
    return requested
