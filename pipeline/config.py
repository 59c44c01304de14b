"""Stage settings from a TOML file, with defaults and a stable hash."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import tomllib
from typing import Any

from pipeline.errors import LookalikeError

__all__ = ["DEFAULTS", "config_hash", "load_config"]

DEFAULTS: dict[str, dict[str, Any]] = {
    "load": {"chunk_lines": 50_000},
    "folds": {"n_folds": 5, "seed": 0},
    "features": {"missing_threshold": 0.9, "min_df": 20, "ctr_smoothing": 20.0, "chunk_rows": 500_000,
                 "ctr_aggregations": ["mean", "max", "count", "lor"]},
    "train": {
        "seed": 0,
        "device": "cpu",
        "models": ["easy_dense"],
        "n_bags": 3,
        "ratio": 1.0,
        "n_estimators": 400,
        "learning_rate": 0.1,
        "num_leaves": 31,
        "min_child_samples": 50,
        "feature_fraction": 0.5,
        "lambda_l2": 1.0,
        "early_stopping_rounds": 40,
        "validation_fraction": 0.1,
        "categorical_crosses": False,
        "final": "auto",
        "n_jobs": 0,
        "scheduler": "",
        "chunk_rows": 500_000,
        "min_positives": 30,
        "refit": True,
    },
}


def load_config(path: str | os.PathLike[str] | None) -> dict[str, dict[str, Any]]:
    """Read ``path`` (TOML) over :data:`DEFAULTS`.

    Unknown sections or keys are an error (a typo must not be silently ignored),
    and so is a value whose type differs from the default's.
    """
    config = copy.deepcopy(DEFAULTS)
    if path is None:
        return config
    try:
        with open(path, "rb") as fh:
            user = tomllib.load(fh)
    except FileNotFoundError:
        raise LookalikeError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise LookalikeError(f"{path}: invalid TOML: {exc}") from None
    for section, values in user.items():
        if section not in config:
            raise LookalikeError(f"{path}: unknown section [{section}]")
        for key, value in values.items():
            if key not in config[section]:
                raise LookalikeError(f"{path}: unknown setting {section}.{key}")
            default = config[section][key]
            if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if type(value) is not type(default):
                raise LookalikeError(
                    f"{path}: {section}.{key} must be {type(default).__name__}, got {value!r}"
                )
            config[section][key] = value
    return config


def config_hash(config: dict[str, Any]) -> str:
    """Short SHA-256 of the settings (stable across key order)."""
    text = json.dumps(config, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
