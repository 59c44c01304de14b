"""Saved models: a joblib file with a JSON manifest beside it, loaded safely.

``joblib.load`` runs pickle, which can execute code. :func:`load_artifact`
therefore checks, before unpickling, that the manifest exists, that the file's
SHA-256 matches it (never overridable), and that the libraries that wrote it
have the same major.minor versions as the ones loading it (overridable with
``trust_versions``).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import joblib

from pipeline.errors import LookalikeError
from pipeline.io import atomic_path, write_json

__all__ = ["library_versions", "load_artifact", "manifest_path", "save_artifact", "sha256"]

_LIBRARIES = ("numpy", "scipy", "scikit-learn", "lightgbm", "joblib", "pandas", "lookalike")


def manifest_path(path: str | os.PathLike[str]) -> Path:
    """The manifest beside an artifact: ``model.joblib`` -> ``model.json``."""
    return Path(path).with_suffix(".json")


def sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def library_versions() -> dict[str, str]:
    """Versions of Python and the libraries whose objects a model pickles."""
    out = {"python": platform.python_version()}
    for lib in _LIBRARIES:
        try:
            out[lib] = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            out[lib] = "absent"
    return out


def _git_commit() -> str:
    try:
        res = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
        return res.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def save_artifact(obj: Any, path: str | os.PathLike[str], info: dict[str, Any] | None = None) -> dict[str, Any]:
    """Dump ``obj`` with joblib and write its manifest; returns the manifest.

    ``info`` (config, its hash, feature names, CV scores, ...) is stored in the
    manifest with the file's SHA-256, the library versions and the git commit.
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        joblib.dump(obj, tmp)
        digest = sha256(tmp)
    manifest = {
        "file": path.name,
        "sha256": digest,
        "versions": library_versions(),
        "git_commit": _git_commit(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **(info or {}),
    }
    write_json(manifest_path(path), manifest)
    return manifest


def _major_minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])


def load_artifact(path: str | os.PathLike[str], trust_versions: bool = False) -> Any:
    """Load an artifact written by :func:`save_artifact`, after checking it.

    Raises
    ------
    LookalikeError
        The manifest is missing or unreadable, the checksum differs (the file
        was changed or corrupted: never loaded), or a library's major.minor
        version differs and ``trust_versions`` is False.
    """
    path = Path(path)
    mpath = manifest_path(path)
    if not mpath.is_file():
        raise LookalikeError(f"{path}: no manifest {mpath.name} beside it; refusing to unpickle an unverified file")
    try:
        manifest = json.loads(mpath.read_text())
        expected = manifest["sha256"]
    except (ValueError, KeyError) as exc:
        raise LookalikeError(f"{mpath}: unreadable manifest ({exc})") from None
    actual = sha256(path)
    if actual != expected:
        raise LookalikeError(
            f"{path}: SHA-256 {actual[:16]}... does not match its manifest ({expected[:16]}...): "
            "the file was modified or corrupted; refusing to load it"
        )
    now = library_versions()
    changed = [
        f"{lib} {was} -> {now.get(lib, 'absent')}"
        for lib, was in manifest.get("versions", {}).items()
        if lib != "python" and _major_minor(was) != _major_minor(now.get(lib, "absent"))
    ]
    if changed and not trust_versions:
        raise LookalikeError(
            f"{path} was written with other library versions ({'; '.join(changed)}); "
            "pass --trust to load it anyway"
        )
    return joblib.load(path)
