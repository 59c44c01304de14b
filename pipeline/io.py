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

__all__ = ["CSRChunkWriter", "atomic_path", "atomic_paths", "open_binary", "write_json"]


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


class CSRChunkWriter:
    """Write a CSR matrix, given as row chunks, to a ``.npz`` that ``scipy.sparse.load_npz`` reads.

    The chunks are never concatenated in memory: their ``data`` and
    ``indices`` go to two scratch files beside ``path`` as they come, and
    :meth:`close` streams them into the (uncompressed) archive. Peak memory is
    one chunk plus ``indptr``.

    Parameters
    ----------
    path : path
        The ``.npz`` to write (usually a temporary of :func:`atomic_paths`).
    n_cols : int
        Columns of every chunk.
    dtype : numpy dtype, default=float32
        Dtype of the stored values.
    """

    def __init__(self, path: str | os.PathLike[str], n_cols: int, dtype: Any = None) -> None:
        import numpy as np

        self.path = Path(path)
        self.n_cols = int(n_cols)
        self.dtype = np.dtype(dtype or np.float32)
        self._scratch = {k: self.path.with_name(f".{self.path.name}.{k}") for k in ("data", "indices")}
        self._fh = {k: open(p, "wb") for k, p in self._scratch.items()}
        self._row_nnz: list[Any] = []

    def append(self, chunk: Any) -> None:
        """Add the rows of a CSR ``chunk``."""
        import numpy as np
        import scipy.sparse as sp

        chunk = sp.csr_matrix(chunk)
        if chunk.shape[1] != self.n_cols:
            raise ValueError(f"chunk has {chunk.shape[1]} columns, expected {self.n_cols}")
        chunk.sort_indices()
        self._fh["data"].write(np.ascontiguousarray(chunk.data, dtype=self.dtype).tobytes())
        self._fh["indices"].write(np.ascontiguousarray(chunk.indices, dtype=np.int32).tobytes())
        self._row_nnz.append(np.diff(chunk.indptr))

    def close(self) -> tuple[int, int]:
        """Write the archive, remove the scratch files; returns the shape."""
        import zipfile

        import numpy as np

        for fh in self._fh.values():
            fh.close()
        row_nnz = np.concatenate(self._row_nnz) if self._row_nnz else np.zeros(0, np.int64)
        indptr = np.r_[0, np.cumsum(row_nnz, dtype=np.int64)]
        if indptr[-1] <= np.iinfo(np.int32).max:
            indptr = indptr.astype(np.int32)
        shape = (len(row_nnz), self.n_cols)
        nnz = int(indptr[-1])
        small = {"format": np.array(b"csr"), "shape": np.array(shape), "indptr": indptr}
        try:
            with zipfile.ZipFile(self.path, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
                for name, arr in small.items():
                    with zf.open(f"{name}.npy", "w", force_zip64=True) as out:
                        np.lib.format.write_array(out, arr, allow_pickle=False)
                for name, dtype in (("data", self.dtype), ("indices", np.dtype(np.int32))):
                    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (nnz,)}
                    with zf.open(f"{name}.npy", "w", force_zip64=True) as out:
                        np.lib.format.write_array_header_2_0(out, header)
                        with open(self._scratch[name], "rb") as src:
                            shutil.copyfileobj(src, out, 16 << 20)
        finally:
            for scratch in self._scratch.values():
                scratch.unlink(missing_ok=True)
        return shape
