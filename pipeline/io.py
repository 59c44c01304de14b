"""File helpers: atomic writes and transparent gzip reading."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_path", "atomic_paths", "open_binary", "write_json"]


def _tmp_for(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp")


@contextlib.contextmanager
def atomic_paths(paths: Sequence[str | os.PathLike[str]]) -> Iterator[list[Path]]:
    """Yield temporary paths that replace ``paths`` together on success.

    Each temporary file (or folder) sits beside its target. When the block
    raises, the temporaries are removed and the targets are left untouched,
    so a failed stage never leaves a half-written output behind.
    """
    targets = [Path(p) for p in paths]
    tmps = [_tmp_for(p) for p in targets]
    for t in tmps:
        t.parent.mkdir(parents=True, exist_ok=True)
        _remove(t)
    try:
        yield tmps
    except BaseException:
        for t in tmps:
            _remove(t)
        raise
    for tmp, target in zip(tmps, targets):
        if tmp.is_dir():
            _remove(target)
        os.replace(tmp, target)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Single-path form of :func:`atomic_paths`."""
    with atomic_paths([path]) as (tmp,):
        yield tmp


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p)
    elif p.exists() or p.is_symlink():
        p.unlink()


def open_binary(path: str | os.PathLike[str]) -> IO[bytes]:
    """Open a file for binary reading, decompressing ``.gz`` transparently."""
    path = Path(path)
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
