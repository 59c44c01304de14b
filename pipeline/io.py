"""File helpers: atomic writes and transparent gzip reading."""

from __future__ import annotations

import contextlib
import glob
import gzip
import json
import os
import shutil
import signal
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

#: What every function taking a file or folder accepts.
PathLike = str | os.PathLike[str]

__all__ = [
    "CSRChunkWriter",
    "Outputs",
    "PathLike",
    "CSRRowReader",
    "atomic_path",
    "atomic_paths",
    "npy_rows",
    "npy_take",
    "open_binary",
    "stage_outputs",
    "staged_path",
    "write_json",
]


def _tmp_for(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp")


class Outputs:
    """The outputs of one stage: written under temporary names, renamed into place together.

    :meth:`path` gives the temporary to write for a target (beside it, so the
    rename stays on one file system); :meth:`remove` names an earlier output
    that this run no longer writes. Nothing replaces or removes a target until
    :meth:`commit`; :meth:`discard` removes every temporary and every scratch
    file named after one (``.<target>.tmp*``). Use it through
    :func:`stage_outputs`, which commits when its block ends and discards when
    it raises, is interrupted (``KeyboardInterrupt``) or exits
    (``SystemExit``, which the CLI raises on SIGTERM): a failed stage leaves
    every previous output as it was and no temporary behind.
    """

    def __init__(self) -> None:
        self._staged: dict[Path, Path] = {}
        self._stale: list[Path] = []

    def remove(self, target: str | os.PathLike[str]) -> None:
        """Remove ``target`` (if it exists) on :meth:`commit`: a file of an earlier run that would mislead."""
        self._stale.append(Path(target))

    def path(self, target: str | os.PathLike[str]) -> Path:
        """The temporary to write for ``target`` (a file or a folder; created by the caller)."""
        target = Path(target)
        if target not in self._staged:
            tmp = _tmp_for(target)
            tmp.parent.mkdir(parents=True, exist_ok=True)
            _remove_with_scratch(tmp)
            self._staged[target] = tmp
        return self._staged[target]

    def commit(self) -> None:
        """Rename every temporary onto its target (a folder replaces the old folder)."""
        for target, tmp in self._staged.items():
            if not tmp.exists():
                raise FileNotFoundError(f"{tmp}: staged for {target} but never written")
        for target, tmp in self._staged.items():
            if tmp.is_dir():
                _remove(target)
            os.replace(tmp, target)
        for target in self._stale:
            if target not in self._staged:
                _remove(target)
        self._staged.clear()
        self._stale.clear()

    def discard(self) -> None:
        """Remove every temporary and its scratch files; the targets stay as they were.

        SIGINT and SIGTERM are held meanwhile (delivered once it is done), so a
        second signal, such as the one make sends its children when it is
        itself interrupted, cannot cut the clean-up short.
        """
        with _signals_held():
            for tmp in self._staged.values():
                _remove_with_scratch(tmp)
            self._staged.clear()
            self._stale.clear()


@contextlib.contextmanager
def stage_outputs() -> Iterator[Outputs]:
    """An :class:`Outputs` committed when the block ends, discarded when it raises."""
    outputs = Outputs()
    try:
        yield outputs
    except BaseException:
        outputs.discard()
        raise
    outputs.commit()


@contextlib.contextmanager
def atomic_paths(paths: Sequence[str | os.PathLike[str]]) -> Iterator[list[Path]]:
    """Yield temporary paths that replace ``paths`` together on success (see :class:`Outputs`)."""
    with stage_outputs() as outputs:
        yield [outputs.path(p) for p in paths]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Single-path form of :func:`atomic_paths`."""
    with atomic_paths([path]) as (tmp,):
        yield tmp


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Block SIGINT and SIGTERM in this thread for the block (where the platform allows it)."""
    if not hasattr(signal, "pthread_sigmask"):  # pragma: no cover - not POSIX
        yield
        return
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p)
    elif p.exists() or p.is_symlink():
        p.unlink()


def _remove_with_scratch(tmp: Path) -> None:
    """A temporary and the scratch files named after it (e.g. a chunk writer's ``.<tmp>.data``)."""
    _remove(tmp)
    for scratch in tmp.parent.glob(f".{glob.escape(tmp.name)}.*"):
        _remove(scratch)


def open_binary(path: str | os.PathLike[str]) -> IO[bytes]:
    """Open a file for binary reading, decompressing ``.gz`` transparently."""
    path = Path(path)
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def write_json(path: str | os.PathLike[str], obj: Any, outputs: Outputs | None = None) -> None:
    """Write ``obj`` as indented JSON: atomically, or staged in ``outputs``."""
    with staged_path(path, outputs) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


@contextlib.contextmanager
def staged_path(path: str | os.PathLike[str], outputs: Outputs | None) -> Iterator[Path]:
    """The temporary of ``path``: staged in ``outputs`` (renamed at its commit), or renamed when the block ends."""
    if outputs is not None:
        yield outputs.path(path)
        return
    with atomic_path(path) as tmp:
        yield tmp



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


def _npy_data_offset(fh: IO[bytes]) -> tuple[int, Any, tuple[int, ...]]:
    """Read an ``.npy`` header at the file position; (data offset, dtype, shape)."""
    import numpy as np

    version = np.lib.format.read_magic(fh)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read(fh)
    if fortran:
        raise ValueError("Fortran-ordered arrays are not supported")
    return fh.tell(), dtype, tuple(shape)


def npy_rows(path: str | os.PathLike[str], start: int, stop: int) -> Any:
    """Rows ``start:stop`` of a C-ordered ``.npy`` file, read without mapping the file.

    (``np.load(mmap_mode="r")`` would do, but every page it touches counts in
    the process's resident memory until it is unmapped.)
    """
    import numpy as np

    with open(path, "rb") as fh:
        offset, dtype, shape = _npy_data_offset(fh)
        row = int(np.prod(shape[1:], dtype=np.int64)) if len(shape) > 1 else 1
        start, stop = max(0, start), min(shape[0], stop)
        fh.seek(offset + start * row * dtype.itemsize)
        out = np.fromfile(fh, dtype=dtype, count=max(stop - start, 0) * row)
    return out.reshape((max(stop - start, 0), *shape[1:]))


def npy_take(path: str | os.PathLike[str], rows: Any) -> Any:  # noqa: ANN401
    """Rows ``rows`` (positions, in that order) of a C-ordered ``.npy`` file, gathered from a map of it
    that is released at once: for a few rows spread over the file, instead of reading every range."""
    import numpy as np

    with open(path, "rb") as fh:
        offset, dtype, shape = _npy_data_offset(fh)
    mapped = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)
    out = np.array(mapped[np.asarray(rows, dtype=np.int64)])
    del mapped
    return out


class CSRRowReader:
    """Read row ranges of a CSR ``.npz`` (as written by :class:`CSRChunkWriter` or ``save_npz``).

    Only ``indptr`` is held; each :meth:`rows` call reads that range's
    ``indices`` (and ``data``) from the uncompressed archive members. A
    compressed archive is loaded whole, once, on first use.

    Parameters
    ----------
    path : path
        The ``.npz`` file.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        import zipfile

        import numpy as np

        self.path = Path(path)
        self._whole = None
        self._ones = np.ones(0, dtype=np.float32)  # the data of rows read without their values (reused)
        self._offsets: dict[str, tuple[int, Any]] = {}
        with zipfile.ZipFile(self.path) as zf:
            infos = {i.filename: i for i in zf.infolist()}
            missing = {"format.npy", "shape.npy", "indptr.npy", "indices.npy", "data.npy"} - set(infos)
            if missing:
                raise ValueError(f"{self.path}: not a sparse matrix archive (lacks {sorted(missing)})")
            fmt = np.load(zf.open("format.npy")).item()
            if (fmt.decode() if isinstance(fmt, bytes) else str(fmt)) != "csr":
                raise ValueError(f"{self.path}: holds a {fmt!r} matrix, expected csr")
            self.shape = tuple(int(v) for v in np.load(zf.open("shape.npy")))
            self.indptr = np.load(zf.open("indptr.npy")).astype(np.int64)
            stored = all(infos[f"{n}.npy"].compress_type == zipfile.ZIP_STORED for n in ("data", "indices"))
        if stored:
            with open(self.path, "rb") as fh:
                for name in ("data", "indices"):
                    fh.seek(infos[f"{name}.npy"].header_offset + 26)
                    n_name, n_extra = np.frombuffer(fh.read(4), dtype="<u2")
                    fh.seek(infos[f"{name}.npy"].header_offset + 30 + int(n_name) + int(n_extra))
                    offset, dtype, _ = _npy_data_offset(fh)
                    self._offsets[name] = (offset, dtype)

    def _read(self, name: str, start: int, stop: int) -> Any:
        import numpy as np

        offset, dtype = self._offsets[name]
        with open(self.path, "rb") as fh:
            fh.seek(offset + start * dtype.itemsize)
            return np.fromfile(fh, dtype=dtype, count=stop - start)

    def rows(self, start: int, stop: int, data: bool = True) -> Any:
        """Rows ``start:stop`` as a ``csr_matrix`` (float32 data; all ones when ``data`` is False)."""
        import numpy as np
        import scipy.sparse as sp

        start, stop = max(0, start), min(self.shape[0], stop)
        lo, hi = int(self.indptr[start]), int(self.indptr[stop])
        indptr = self.indptr[start : stop + 1] - lo
        if not self._offsets:
            if self._whole is None:
                self._whole = sp.load_npz(self.path).tocsr()
            whole = self._whole
            indices, values = whole.indices[lo:hi], whole.data[lo:hi]
        else:
            indices = self._read("indices", lo, hi)
            values = self._read("data", lo, hi) if data else None
        if values is None or not data:
            values = self._ones_of(hi - lo)
        return sp.csr_matrix((values.astype(np.float32, copy=False), indices, indptr), shape=(stop - start, self.shape[1]))

    def _ones_of(self, n: int) -> Any:  # noqa: ANN401
        """``n`` ones (float32), a read-only view of one buffer kept for every call: rows read without
        their values were 46 s of fresh 128 MB arrays in a full-scale train stage."""
        import numpy as np

        if len(self._ones) < n:
            self._ones = np.ones(max(n, 2 * len(self._ones)), dtype=np.float32)
            self._ones.setflags(write=False)
        return self._ones[:n]

    def take(self, rows: Any, data: bool = True) -> Any:  # noqa: ANN401
        """Rows ``rows`` (positions, in that order) as a ``csr_matrix``, gathered from a map of the
        archive released at once (see :meth:`rows` for ranges)."""
        import numpy as np
        import scipy.sparse as sp

        rows = np.asarray(rows, dtype=np.int64)
        if not self._offsets:
            if self._whole is None:
                self._whole = sp.load_npz(self.path).tocsr()
            out = self._whole[rows]
            return out if data else sp.csr_matrix((self._ones_of(out.nnz), out.indices, out.indptr), shape=out.shape)
        starts, lens = self.indptr[rows], self.indptr[rows + 1] - self.indptr[rows]
        indptr = np.r_[0, np.cumsum(lens)].astype(np.int64)
        pos = np.repeat(starts - indptr[:-1], lens) + np.arange(indptr[-1])  # positions of the rows' entries
        parts = {}
        for name in ("indices", "data") if data else ("indices",):
            offset, dtype = self._offsets[name]
            mapped = np.memmap(self.path, dtype=dtype, mode="r", offset=offset, shape=(int(self.indptr[-1]),))
            parts[name] = np.array(mapped[pos])
            del mapped
        values = parts["data"].astype(np.float32, copy=False) if data else self._ones_of(len(pos))
        return sp.csr_matrix((values, parts["indices"], indptr), shape=(len(rows), self.shape[1]))

    def chunks(self, chunk_rows: int, data: bool = True) -> Iterator[tuple[int, int, Any]]:
        """``(start, stop, rows)`` over all rows, ``chunk_rows`` at a time."""
        for start in range(0, self.shape[0], chunk_rows):
            stop = min(start + chunk_rows, self.shape[0])
            yield start, stop, self.rows(start, stop, data=data)
