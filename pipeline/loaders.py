"""Chunked loaders: competition files to sparse matrices and index arrays.

``userFeature.data`` is parsed in chunks of whole lines into one per-user CSR
matrix with a column block per field:

* every field except ``uid`` is a bag of ids with binary CountVectorizer
  semantics (a list is a set); a single-valued field's block is its one-hot
  encoding and ``house`` (only ever ``1``) becomes a flag column;
* every id is a token: one-character ids and the ``0`` "unknown" id are kept;
* columns of a field are its distinct ids in increasing order, so the result
  does not depend on the chunk size or on the order of lines or values;
* each column's document frequency is stored, so later stages prune without
  re-reading the file;
* a field the format does not know is kept as a new block, after the known
  ones (logged once).

The matrix is saved as ``.npy`` arrays (memory-mappable) plus ``vocab.json``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from tqdm.auto import tqdm

from pipeline._parse import parse_chunk
from pipeline.errors import InputFormatError, LookalikeError
from pipeline.io import open_binary
from pipeline.schema import AD_COLUMNS, FIELD_ORDER, MULTI_VALUED, SINGLE_VALUED

__all__ = [
    "AdTable",
    "FieldBlock",
    "UserMatrix",
    "iter_line_chunks",
    "load_ads",
    "load_pairs",
    "load_user_matrix",
    "parse_users",
    "save_user_matrix",
]

logger = logging.getLogger(__name__)

_READ_BYTES = 16 << 20


@dataclass
class FieldBlock:
    """One field's column block in the user matrix.

    Attributes
    ----------
    name : str
        Field name.
    offset : int
        First column of the block.
    values : ndarray of int64
        The field's ids, in column order (increasing).
    df : ndarray of int64
        Number of users holding each id (document frequency).
    kind : {"single", "multi", "unknown"}
        How the format describes the field.
    """

    name: str
    offset: int
    values: np.ndarray
    df: np.ndarray
    kind: str

    @property
    def size(self) -> int:
        """Number of columns."""
        return len(self.values)

    @property
    def stop(self) -> int:
        """One past the last column."""
        return self.offset + self.size


@dataclass
class UserMatrix:
    """Users as rows of a binary CSR matrix, with their vocabularies.

    Attributes
    ----------
    indptr : ndarray of int64, shape (n_users + 1,)
    indices : ndarray of int32, shape (nnz,)
        Column of each stored one, sorted within a row (may be memory-mapped).
    uids : ndarray of int64, shape (n_users,)
        uid of each row, in file order.
    fields : list of FieldBlock
        Column blocks, in column order.
    """

    indptr: np.ndarray
    indices: np.ndarray
    uids: np.ndarray
    fields: list[FieldBlock]
    _uid_order: np.ndarray | None = field(default=None, repr=False)

    @property
    def n_users(self) -> int:
        """Number of rows."""
        return len(self.uids)

    @property
    def n_cols(self) -> int:
        """Number of columns."""
        return self.fields[-1].stop if self.fields else 0

    @property
    def field_names(self) -> list[str]:
        """Names of the fields, in column order."""
        return [f.name for f in self.fields]

    def block(self, name: str) -> FieldBlock:
        """The column block of field ``name``."""
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    def csr(self, rows: np.ndarray | None = None, dtype: type = np.float32) -> sp.csr_matrix:
        """The matrix (or its ``rows``) as a ``scipy.sparse.csr_matrix`` of ones."""
        if rows is None:
            indptr, indices = self.indptr, np.asarray(self.indices)
        else:
            indptr, indices = take_rows(self.indptr, self.indices, np.asarray(rows))
        data = np.ones(len(indices), dtype=dtype)
        return sp.csr_matrix((data, indices, indptr), shape=(len(indptr) - 1, self.n_cols))

    def rows_of(self, uids: np.ndarray) -> np.ndarray:
        """Row of each uid; ``-1`` where the uid is unknown."""
        if self._uid_order is None:
            self._uid_order = np.argsort(self.uids, kind="stable")
        sorted_uids = self.uids[self._uid_order]
        pos = np.searchsorted(sorted_uids, uids)
        pos_c = np.minimum(pos, len(sorted_uids) - 1)
        found = (pos < len(sorted_uids)) & (sorted_uids[pos_c] == uids)
        return np.where(found, self._uid_order[pos_c], -1)


def take_rows(indptr: np.ndarray, indices: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CSR ``indptr``/``indices`` of the given rows (in that order, repeats allowed)."""
    starts, stops = indptr[rows], indptr[rows + 1]
    lens = stops - starts
    new_indptr = np.r_[0, np.cumsum(lens)].astype(np.int64)
    pos = np.repeat(starts - new_indptr[:-1], lens) + np.arange(new_indptr[-1])
    return new_indptr, np.asarray(indices[pos])


# ---------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------
def iter_line_chunks(path: str | os.PathLike[str], chunk_lines: int) -> Iterator[tuple[int, bytes]]:
    """Yield ``(first_line, data)``: runs of at most ``chunk_lines`` whole lines.

    Reads ``.gz`` files transparently; a missing final newline is fine.
    """
    if chunk_lines < 1:
        raise LookalikeError(f"chunk size must be at least 1 line, got {chunk_lines}")
    line_no = 1
    rest = b""
    with open_binary(path) as fh:
        while True:
            block = fh.read(_READ_BYTES)
            data = rest + block
            if not block:
                if data:
                    yield from _split_lines(data, line_no, chunk_lines)
                return
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                rest = data
                continue
            for first, piece in _split_lines(data[:cut], line_no, chunk_lines):
                yield first, piece
            line_no += data.count(b"\n", 0, cut)
            rest = data[cut:]


def _split_lines(data: bytes, first_line: int, chunk_lines: int) -> Iterator[tuple[int, bytes]]:
    ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10) + 1
    if not len(ends) or ends[-1] != len(data):
        ends = np.r_[ends, len(data)]
    start = 0
    for i in range(chunk_lines - 1, len(ends) + chunk_lines - 1, chunk_lines):
        stop = int(ends[min(i, len(ends) - 1)])
        yield first_line + (i - chunk_lines + 1), data[start:stop]
        start = stop


def _field_kind(name: str) -> str:
    if name in SINGLE_VALUED:
        return "single"
    if name in MULTI_VALUED:
        return "multi"
    return "unknown"


class _VocabAccumulator:
    """Distinct ids per field, merged across chunks."""

    def __init__(self) -> None:
        self.pending: dict[str, list[np.ndarray]] = {}

    def add(self, name: str, values: np.ndarray) -> None:
        parts = self.pending.setdefault(name, [])
        parts.append(np.unique(values))
        if len(parts) > 16:
            self.pending[name] = [np.unique(np.concatenate(parts))]

    def result(self, name: str) -> np.ndarray:
        parts = self.pending.get(name, [])
        if not parts:
            return np.zeros(0, dtype=np.int64)
        return np.unique(np.concatenate(parts)).astype(np.int64)


def parse_users(
    path: str | os.PathLike[str], chunk_lines: int = 50_000, indices_out: str | os.PathLike[str] | None = None
) -> UserMatrix:
    """Parse ``userFeature.data`` in chunks into a :class:`UserMatrix`.

    Parameters
    ----------
    path : path
        The user feature file (plain or gzip).
    chunk_lines : int
        Lines parsed at a time; the result does not depend on it.
    indices_out : path, optional
        Write the column indices straight into this ``.npy`` file (and
        memory-map it in the result) instead of holding them in memory.

    Raises
    ------
    InputFormatError
        Naming the file and line of a malformed line or a repeated uid.
    """
    path_s = str(path)
    if os.path.getsize(path) == 0:
        raise InputFormatError(path_s, None, "empty file")
    single = SINGLE_VALUED | {"uid"}
    vocab = _VocabAccumulator()
    code_of: dict[str, int] = {}
    chunks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (row_nnz, field code, value)
    uid_parts: list[np.ndarray] = []
    size = os.path.getsize(path)
    with tqdm(total=size, unit="B", unit_scale=True, desc="parse users", disable=None) as bar:
        for first_line, data in iter_line_chunks(path, chunk_lines):
            chunk = parse_chunk(data, path_s, first_line, single)
            bar.update(len(data))
            remap = np.empty(len(chunk.names), dtype=np.int64)
            for i, name in enumerate(chunk.names):
                if name not in code_of:
                    code_of[name] = len(code_of)
                    if _field_kind(name) == "unknown" and name != "uid":
                        logger.warning(
                            "%s:%d: unknown field %r kept as a new multi-valued field",
                            path_s, first_line, name,
                        )
                remap[i] = code_of[name]
            codes = remap[chunk.field].astype(np.uint8 if len(code_of) < 256 else np.uint16)
            order = np.argsort(codes, kind="stable")
            bounds = np.r_[0, np.cumsum(np.bincount(codes, minlength=len(code_of)))]
            for name, c in code_of.items():
                if bounds[c + 1] > bounds[c]:
                    vocab.add(name, chunk.value[order[bounds[c] : bounds[c + 1]]])
            chunks.append((chunk.row_nnz, codes, chunk.value))
            uid_parts.append(chunk.uids)
    uids = np.concatenate(uid_parts)
    _check_unique_uids(uids, path_s)

    names = [n for n in FIELD_ORDER if n in code_of and n != "uid"]
    names += [n for n in FIELD_ORDER[1:] if n not in code_of]  # known but absent: empty block
    names += sorted(n for n in code_of if n not in FIELD_ORDER)
    fields, offset = [], 0
    for name in names:
        values = vocab.result(name)
        fields.append(FieldBlock(name, offset, values, np.zeros(len(values), np.int64), _field_kind(name)))
        offset += len(values)
    n_cols = offset
    by_code = {code_of[f.name]: f for f in fields if f.name in code_of}

    indptr_parts, nnz_total = [np.zeros(1, dtype=np.int64)], 0
    df = np.zeros(n_cols, dtype=np.int64)
    collapsed = 0
    out_chunks: list[np.ndarray] = []
    writer = _NpyStreamWriter(indices_out, np.int32) if indices_out else None
    for i in tqdm(range(len(chunks)), desc="columns", unit="chunk", disable=None):
        row_nnz, codes, values = chunks[i]
        chunks[i] = None  # type: ignore[call-overload]  # free as we go
        cols = values  # remapped in place: the values are not needed afterwards
        order = np.argsort(codes, kind="stable")
        bounds = np.r_[0, np.cumsum(np.bincount(codes, minlength=len(code_of)))]
        for c, block in by_code.items():
            sel = order[bounds[c] : bounds[c + 1]]
            if len(sel):
                cols[sel] = block.offset + np.searchsorted(block.values, values[sel])
        del codes, order
        indptr = np.r_[0, np.cumsum(row_nnz)]
        m = sp.csr_matrix(
            (np.ones(len(cols), dtype=np.int8), cols, indptr), shape=(len(row_nnz), max(n_cols, 1))
        )
        m.sort_indices()
        if len(m.indices) > 1:
            row_of = np.repeat(np.arange(len(row_nnz)), row_nnz)
            same = np.r_[False, (m.indices[1:] == m.indices[:-1]) & (row_of[1:] == row_of[:-1])]
            if same.any():  # an id repeated within a list: lists are sets
                collapsed += int(same.sum())
                row_nnz = row_nnz - np.bincount(row_of[same], minlength=len(row_nnz))
                m = sp.csr_matrix(
                    (m.data[~same], m.indices[~same], np.r_[0, np.cumsum(row_nnz)]), shape=m.shape
                )
        idx = m.indices.astype(np.int32, copy=False)
        df += np.bincount(idx, minlength=n_cols)[:n_cols]
        indptr_parts.append(np.cumsum(row_nnz) + nnz_total)
        nnz_total += len(idx)
        if writer is not None:
            writer.write(idx)
        else:
            out_chunks.append(idx)
    if collapsed:
        logger.info("%d repeated ids within a list counted once (lists are sets)", collapsed)
    for f in fields:
        f.df = df[f.offset : f.stop]
    indptr = np.concatenate(indptr_parts)
    if writer is not None:
        writer.close(nnz_total)
        indices = np.load(indices_out, mmap_mode="r")
    else:
        indices = np.concatenate(out_chunks) if out_chunks else np.zeros(0, np.int32)
    logger.info(
        "%s: %s users, %s columns in %d fields, %s values",
        path_s, f"{len(uids):,}", f"{n_cols:,}", len(fields), f"{nnz_total:,}",
    )
    return UserMatrix(indptr=indptr, indices=indices, uids=uids, fields=fields)


class _NpyStreamWriter:
    """Append 1-D arrays to a ``.npy`` file whose length is known only at the end.

    The header is written with a fixed-width shape field first and rewritten in
    place on :meth:`close`, so the data never moves.
    """

    def __init__(self, path: str | os.PathLike[str], dtype: type) -> None:
        self.path = Path(path)
        self.dtype = np.dtype(dtype)
        self.fh = open(self.path, "wb")
        self.fh.write(self._header(0))

    def _header(self, n: int) -> bytes:
        descr = np.lib.format.dtype_to_descr(self.dtype)
        text = f"{{'descr': {descr!r}, 'fortran_order': False, 'shape': ({n},{' ' * (20 - len(str(n)))}), }}"
        pad = 64 - (10 + len(text) + 1) % 64
        text = text + " " * pad + "\n"
        return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text.encode("latin1")

    def write(self, a: np.ndarray) -> None:
        self.fh.write(np.ascontiguousarray(a, dtype=self.dtype).tobytes())

    def close(self, n: int) -> None:
        self.fh.seek(0)
        self.fh.write(self._header(n))
        self.fh.close()


def _check_unique_uids(uids: np.ndarray, path: str) -> None:
    order = np.argsort(uids, kind="stable")
    s = uids[order]
    dup = np.flatnonzero(s[1:] == s[:-1])
    if len(dup):
        first, second = sorted((int(order[dup[0]]), int(order[dup[0] + 1])))
        raise InputFormatError(
            path, second + 1, f"uid {int(s[dup[0]])} already appears on line {first + 1}"
        )


# ---------------------------------------------------------------------------
# saving and loading the user matrix
# ---------------------------------------------------------------------------
def save_user_matrix(m: UserMatrix, folder: str | os.PathLike[str], source: str = "") -> None:
    """Write ``m`` into ``folder`` (``.npy`` arrays and ``vocab.json``).

    ``indices.npy`` is not rewritten when ``m.indices`` already maps it.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "indptr.npy", m.indptr)
    np.save(folder / "uids.npy", m.uids)
    target = folder / "indices.npy"
    if not (isinstance(m.indices, np.memmap) and Path(m.indices.filename).resolve() == target.resolve()):
        np.save(target, np.asarray(m.indices, dtype=np.int32))
    vocab = {
        "source": source,
        "n_users": m.n_users,
        "n_cols": m.n_cols,
        "nnz": int(m.indptr[-1]),
        "fields": [
            {
                "name": f.name,
                "kind": f.kind,
                "offset": f.offset,
                "size": f.size,
                "values": f.values.tolist(),
                "df": f.df.tolist(),
            }
            for f in m.fields
        ],
    }
    (folder / "vocab.json").write_text(json.dumps(vocab) + "\n")


def load_user_matrix(folder: str | os.PathLike[str], mmap: bool = True) -> UserMatrix:
    """Read a matrix written by :func:`save_user_matrix` (indices memory-mapped)."""
    folder = Path(folder)
    vocab = json.loads((folder / "vocab.json").read_text())
    fields = [
        FieldBlock(
            f["name"], f["offset"], np.asarray(f["values"], dtype=np.int64),
            np.asarray(f["df"], dtype=np.int64), f["kind"],
        )
        for f in vocab["fields"]
    ]
    return UserMatrix(
        indptr=np.load(folder / "indptr.npy"),
        indices=np.load(folder / "indices.npy", mmap_mode="r" if mmap else None),
        uids=np.load(folder / "uids.npy"),
        fields=fields,
    )


# ---------------------------------------------------------------------------
# CSV files: ads and pairs
# ---------------------------------------------------------------------------
def _read_int_csv(path: str | os.PathLike[str], columns: tuple[str, ...]) -> pd.DataFrame:
    """Read an all-integer CSV with an exact header; errors name file and line."""
    path_s = str(path)
    if os.path.getsize(path) == 0:
        raise InputFormatError(path_s, None, "empty file")
    with open_binary(path) as fh:
        header = fh.readline().decode("utf-8", "replace").strip().lstrip("\ufeff")
    if header.split(",") != list(columns):
        raise InputFormatError(
            path_s, 1, f"wrong header {header!r}; expected {','.join(columns)!r}"
        )
    try:
        df = pd.read_csv(path, dtype=np.int64, engine="c")
    except (ValueError, pd.errors.ParserError) as exc:
        raise _locate_csv_problem(path_s, len(columns)) or InputFormatError(path_s, None, str(exc)) from None
    if df.empty:
        raise InputFormatError(path_s, None, "no data rows after the header")
    return df


def _locate_csv_problem(path: str, n_cols: int) -> InputFormatError | None:
    """Slow scan that finds the first bad line once the fast reader has failed."""
    with open_binary(path) as fh:
        fh.readline()
        for line_no, raw in enumerate(fh, start=2):
            text = raw.decode("utf-8", "replace").strip()
            if not text:
                continue
            cells = text.split(",")
            if len(cells) != n_cols:
                return InputFormatError(path, line_no, f"expected {n_cols} values, got {len(cells)}")
            for cell in cells:
                try:
                    int(cell)
                except ValueError:
                    return InputFormatError(path, line_no, f"value {cell!r} is not an integer")
    return None


@dataclass
class AdTable:
    """Ad features: one row per aid.

    Attributes
    ----------
    aids : ndarray of int64
        aid of each row, increasing.
    frame : pandas.DataFrame
        The raw columns of ``adFeature.csv`` in aid order.
    """

    aids: np.ndarray
    frame: pd.DataFrame

    def index_of(self, aids: np.ndarray) -> np.ndarray:
        """Row of each aid; ``-1`` where unknown."""
        pos = np.searchsorted(self.aids, aids)
        pos_c = np.minimum(pos, len(self.aids) - 1)
        return np.where(self.aids[pos_c] == aids, pos_c, -1)

    def one_hot(self) -> tuple[sp.csr_matrix, list[str]]:
        """One-hot id fields plus ``creativeSize`` as a number; with column names."""
        from sklearn.preprocessing import OneHotEncoder

        cols = [c for c in AD_COLUMNS if c != "aid"]
        enc = OneHotEncoder(dtype=np.float32, handle_unknown="ignore")
        onehot = enc.fit_transform(self.frame[cols].to_numpy())
        numeric = sp.csr_matrix(self.frame[["creativeSize"]].to_numpy(dtype=np.float32))
        names = [f"ad:{n}" for n in enc.get_feature_names_out(cols)] + ["ad:creativeSize_num"]
        return sp.hstack([onehot, numeric], format="csr"), names


def load_ads(path: str | os.PathLike[str]) -> AdTable:
    """Read ``adFeature.csv``; a repeated aid is an error."""
    df = _read_int_csv(path, AD_COLUMNS)
    dup = df["aid"].duplicated()
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        raise InputFormatError(str(path), i + 2, f"aid {int(df['aid'].iloc[i])} appears twice")
    df = df.sort_values("aid", kind="stable").reset_index(drop=True)
    return AdTable(aids=df["aid"].to_numpy(), frame=df)


def load_pairs(
    path: str | os.PathLike[str],
    columns: tuple[str, ...],
    ads: AdTable,
    users: UserMatrix,
) -> dict[str, np.ndarray]:
    """Read ``train.csv`` or ``test1.csv`` and resolve aids and uids to rows.

    Returns
    -------
    dict
        ``aid``, ``uid``, ``aid_idx`` (row in ``ads``), ``user_row`` (row in
        ``users``) and, for train, ``label`` in {0, 1}.
    """
    path_s = str(path)
    df = _read_int_csv(path, columns)
    aid = df["aid"].to_numpy()
    uid = df["uid"].to_numpy()
    out = {"aid": aid, "uid": uid}
    if "label" in columns:
        label = df["label"].to_numpy()
        bad = (label != 1) & (label != -1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InputFormatError(path_s, i + 2, f"label {int(label[i])} is not 1 or -1")
        out["label"] = (label == 1).astype(np.int8)
    aid_idx = ads.index_of(aid)
    if (aid_idx < 0).any():
        i = int(np.flatnonzero(aid_idx < 0)[0])
        raise InputFormatError(path_s, i + 2, f"aid {int(aid[i])} is not in adFeature.csv")
    rows = users.rows_of(uid)
    if (rows < 0).any():
        missing = np.flatnonzero(rows < 0)
        i = int(missing[0])
        raise InputFormatError(
            path_s, i + 2,
            f"uid {int(uid[i])} is not in userFeature.data ({len(missing)} such rows in all)",
        )
    out["aid_idx"] = aid_idx.astype(np.int32)
    out["user_row"] = rows.astype(np.int64)
    return out
