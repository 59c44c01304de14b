"""Saved models: a joblib file with a JSON manifest beside it, loaded safely.

``joblib.load`` runs pickle, which can execute code. :func:`load_artifact`
therefore checks, before unpickling, that the manifest exists, that it says
the file is the kind of artifact the caller expects (:class:`ArtifactKind`:
a featurizer passed where a scorer is wanted is refused by name), that the
file's SHA-256 matches it (never overridable), and that the libraries that
wrote it have the same major.minor versions as the ones loading it
(overridable with ``trust_versions``).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import os
import platform
import subprocess
import time
from enum import StrEnum
from pathlib import Path
from typing import Any

import joblib

from core import LookalikeError
from pipeline.io import Outputs, staged_path, write_json

__all__ = [
    "ArtifactKind", "check_artifact", "library_versions", "load_artifact", "manifest_path", "save_artifact", "sha256",
    "unpickle_checked",
]


class ArtifactKind(StrEnum):
    """What a saved file holds (the manifest's ``artifact`` entry)."""

    FEATURIZER = "featurizer"  #: the features stage's fitted PairFeaturizer
    FOLD_MODELS = "fold models"  #: one model's estimators, one per task (models/<model>.joblib)
    SCORER = "scorer"  #: the whole scoring pipeline (models/scorer.joblib)

_LIBRARIES = ("numpy", "scipy", "scikit-learn", "lightgbm", "joblib", "pandas", "lookalike")
#: recorded where installed; a file written with one loads without it (a model that needs it then says so)
_OPTIONAL_LIBRARIES = ("torch",)


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
    for lib in _OPTIONAL_LIBRARIES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[lib] = importlib.metadata.version(lib)
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


def save_artifact(
    obj: Any, path: str | os.PathLike[str], kind: ArtifactKind, info: dict[str, Any] | None = None,  # noqa: ANN401
    outputs: Outputs | None = None,
) -> dict[str, Any]:
    """Dump ``obj`` with joblib and write its manifest; returns the manifest.

    The manifest says what the file is (``kind``) and holds ``info`` (config,
    its hash, feature names, CV scores, ...) with the file's SHA-256, the
    library versions and the git commit. With ``outputs``, both files are
    staged there (renamed with the rest of the stage's outputs).
    """
    path = Path(path)
    with staged_path(path, outputs) as tmp:
        joblib.dump(obj, tmp)
        digest = sha256(tmp)
    manifest = {
        "file": path.name,
        "artifact": str(kind),
        "sha256": digest,
        "versions": library_versions(),
        "git_commit": _git_commit(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **(info or {}),
    }
    write_json(manifest_path(path), manifest, outputs)
    return manifest


def _major_minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])


def check_artifact(path: str | os.PathLike[str], kind: ArtifactKind, trust_versions: bool = False) -> dict[str, Any]:
    """Every check :func:`load_artifact` makes, without unpickling; returns the manifest.

    Raises
    ------
    LookalikeError
        The manifest is missing or unreadable, it describes another kind of
        artifact, the checksum differs (the file was changed or corrupted:
        never loaded), or a library's major.minor version differs and
        ``trust_versions`` is False. Each names the file.
    """
    path = Path(path)
    mpath = manifest_path(path)
    if not path.is_file():
        raise LookalikeError(f"{path}: no such {kind} (re-run the stage that writes it)")
    if not mpath.is_file() or mpath == path:
        raise LookalikeError(f"{path}: not a lookalike {kind} (no manifest {mpath.name} beside it); "
                             "refusing to unpickle an unverified file")
    try:
        manifest = json.loads(mpath.read_text())
        expected = manifest["sha256"]
    except (ValueError, KeyError, TypeError) as exc:
        raise LookalikeError(f"{path}: not a lookalike {kind} (its manifest {mpath.name} is not one: {exc})") from None
    found = manifest.get("artifact")
    if found != str(kind):
        what = f"a {found}" if found else "an artifact of an earlier lookalike version (its manifest names no kind)"
        raise LookalikeError(f"{path} is {what}, not a {kind}")
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
        if lib != "python" and not (lib in _OPTIONAL_LIBRARIES and lib not in now)
        and _major_minor(was) != _major_minor(now.get(lib, "absent"))
    ]
    if changed and not trust_versions:
        raise LookalikeError(
            f"{path} was written with other library versions ({'; '.join(changed)}); "
            "pass --trust to load it anyway"
        )
    return manifest


def load_artifact(
    path: str | os.PathLike[str], kind: ArtifactKind, trust_versions: bool = False, expected_type: type | None = None
) -> Any:  # noqa: ANN401
    """Load an artifact of ``kind`` written by :func:`save_artifact`, after :func:`check_artifact`.

    ``expected_type``: also check the unpickled object's class.
    """
    check_artifact(path, kind, trust_versions)
    return unpickle_checked(path, kind, expected_type)


def unpickle_checked(path: str | os.PathLike[str], kind: ArtifactKind, expected_type: type | None = None) -> Any:  # noqa: ANN401
    """The object of an artifact that :func:`check_artifact` has passed (call that first), and the
    check of its class; :func:`load_artifact` is both."""
    obj = joblib.load(path)
    if expected_type is not None and not isinstance(obj, expected_type):
        raise LookalikeError(f"{path} holds a {type(obj).__name__}, not a {expected_type.__name__} ({kind})")
    return obj
