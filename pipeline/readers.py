"""Readers of the competition's raw files: chunked ``userFeature.data``, the CSV files.

``userFeature.data`` is parsed in chunks of whole lines into one per-user CSR
matrix (:class:`core.UserMatrix`) with a column block per field:

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

The load stage saves what these return (:mod:`pipeline.files`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from core import AdTable, FieldBlock, InputFormatError, LookalikeError, Pairs, UserMatrix, distinct, sorted_index
from pipeline._fastparse import NameTable, filter_lines, mark_seen, remap_sort_rows, scan_chunk
from pipeline._parse import INT32_MAX, parse_chunk
from pipeline.io import open_binary
from pipeline.schema import AD_COLUMNS, FIELD_ORDER, MULTI_VALUED, SINGLE_VALUED

__all__ = [
    "ID_MAX",
    "first_repeats",
    "iter_line_chunks",
    "locate_csv_problem",
    "pair_keys",
    "parse_users",
    "read_ads_csv",
    "read_int_csv",
    "read_pairs_csv",
]

logger = logging.getLogger(__name__)

_READ_BYTES = 16 << 20


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
            n_newlines = data.count(b"\n", 0, cut)
            yield from _split_lines(data[:cut] if cut < len(data) else data, line_no, chunk_lines, n_newlines)
            line_no += n_newlines
            rest = data[cut:]


def _split_lines(
    data: bytes, first_line: int, chunk_lines: int, n_newlines: int | None = None
) -> Iterator[tuple[int, bytes]]:
    """Runs of at most ``chunk_lines`` lines of ``data`` (``n_newlines``: its newlines, if counted)."""
    if (data.count(b"\n") if n_newlines is None else n_newlines) < chunk_lines:  # the usual case: no line scan
        yield first_line, data
        return
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


#: fields whose largest id is below this get a dense id -> column table
_DENSE_LIMIT = 1 << 24


def parse_users(
    path: str | os.PathLike[str], chunk_lines: int = 50_000, indices_out: str | os.PathLike[str] | None = None,
    keep_uids: np.ndarray | None = None,
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
    keep_uids : ndarray of int, optional
        Parse only the lines of these uids (scoring needs only the users of
        its pairs); the others are skipped by a compiled scan of the line
        starts. Vocabularies then cover the kept lines only. A kept line
        (or one whose uid cannot be read) that is malformed is reported with
        its exact line; the skipped users' lines are not validated.

    Raises
    ------
    InputFormatError
        Naming the file and line of a malformed line or a repeated uid.
    """
    path_s = str(path)
    if os.path.getsize(path) == 0:
        raise InputFormatError(path_s, None, "empty file")
    single = SINGLE_VALUED | {"uid"}
    table = NameTable(list(FIELD_ORDER), set(single))
    n_known = len(FIELD_ORDER)
    chunks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (row_nnz, code, value)
    uid_parts: list[np.ndarray] = []
    size = os.path.getsize(path)
    with tqdm(total=size, unit="B", unit_scale=True, desc="parse users", disable=None) as bar:
        keep = None if keep_uids is None else distinct(np.asarray(keep_uids, dtype=np.int64))
        for first_line, data in iter_line_chunks(path, chunk_lines):
            n_names = int(table.n_names[0])
            n_bytes = len(data)
            full = data
            if keep is not None:
                data, _ = filter_lines(data, keep)
            scanned = scan_chunk(data, table)
            if scanned is None:  # something is malformed: the vectorised parser says what and where
                # (on the whole chunk, so the line number is the file's)
                scanned = _reparse(full, path_s, first_line, single, table)
                if keep is not None:
                    scanned = _keep_rows(scanned, keep)
            for name in table.names[max(n_names, n_known):]:
                logger.warning(
                    "%s:%d: unknown field %r kept as a new multi-valued field", path_s, first_line, name
                )
            uids, row_nnz, codes, values = scanned
            chunks.append((row_nnz, codes, values))
            uid_parts.append(uids)
            bar.update(n_bytes)
    uids = np.concatenate(uid_parts)
    _check_unique_uids(uids, path_s)

    names = table.names
    max_value = table.max_value[: len(names)]
    order = list(FIELD_ORDER[1:]) + sorted(n for n in names[n_known:])
    # vocabularies: a dense "seen" table per field, or sorted ids for huge id ranges
    base = np.full(len(names), -1, dtype=np.int64)
    total = 0
    for c in range(1, len(names)):
        if 0 <= max_value[c] < _DENSE_LIMIT:
            base[c] = total
            total += int(max_value[c]) + 1
    seen = np.zeros(total, dtype=np.bool_)
    sparse_ids: dict[int, list[np.ndarray]] = {c: [] for c in range(1, len(names)) if max_value[c] >= _DENSE_LIMIT}
    for _, codes, values in chunks:
        mark_seen(codes, values, base, seen)
        for c, parts in sparse_ids.items():
            parts.append(distinct(values[codes == c]))
    fields, offset = [], 0
    lut = np.full(total, -1, dtype=np.int32)
    vocab_of: dict[int, np.ndarray] = {}
    for name in order:
        c = names.index(name)
        if base[c] >= 0:
            ids = np.flatnonzero(seen[base[c] : base[c] + max_value[c] + 1])
            lut[base[c] + ids] = offset + np.arange(len(ids), dtype=np.int32)
        elif c in sparse_ids:
            ids = distinct(np.concatenate(sparse_ids[c])) if sparse_ids[c] else np.zeros(0, np.int64)
            vocab_of[c] = ids
        else:
            ids = np.zeros(0, dtype=np.int64)
        fields.append(FieldBlock(name, offset, ids.astype(np.int64), np.zeros(len(ids), np.int64), _field_kind(name)))
        offset += len(ids)
    n_cols = offset
    if n_cols > np.iinfo(np.int32).max:  # pragma: no cover - far beyond any real vocabulary
        raise LookalikeError(f"{n_cols} columns do not fit int32 indices")
    offset_of = {names.index(f.name): f.offset for f in fields}

    indptr_parts, nnz_total = [np.zeros(1, dtype=np.int64)], 0
    df = np.zeros(max(n_cols, 1), dtype=np.int64)
    removed = 0
    out_chunks: list[np.ndarray] = []
    writer = _NpyStreamWriter(indices_out, np.int32) if indices_out else None
    for i in tqdm(range(len(chunks)), desc="columns", unit="chunk", disable=None):
        row_nnz, codes, values = chunks[i]
        chunks[i] = None  # type: ignore[call-overload]  # free as we go
        for c, ids in vocab_of.items():  # huge-id fields: columns by binary search, in place
            sel = codes == c
            values[sel] = offset_of[c] + np.searchsorted(ids, values[sel])
        # dense fields through the lookup table; sorted and de-duplicated per row, in place
        row_nnz, n_removed = remap_sort_rows(codes, values, row_nnz, base, lut, values, df)
        removed += n_removed
        idx = values[: int(row_nnz.sum())]
        indptr_parts.append(np.cumsum(row_nnz) + nnz_total)
        nnz_total += len(idx)
        if writer is not None:
            writer.write(idx)
        else:
            out_chunks.append(idx.copy())
        del codes, values
    if removed:
        logger.info("%d repeated ids within a list counted once (lists are sets)", removed)
    for f in fields:
        f.df = df[f.offset : f.stop].copy()
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


def _keep_rows(
    scanned: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], keep: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Only the rows of a parsed chunk whose uid is in ``keep`` (sorted)."""
    uids, row_nnz, codes, values = scanned
    rows = sorted_index(keep, uids) >= 0
    per_value = np.repeat(rows, row_nnz)
    return uids[rows], row_nnz[rows], codes[per_value], values[per_value]


def _reparse(
    data: bytes, path: str, first_line: int, single: frozenset[str], table: NameTable
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Parse a chunk the fast scan refused: raises the precise error, or returns its result."""
    chunk = parse_chunk(data, path, first_line, single)
    code_of = np.empty(len(chunk.names), dtype=np.int64)
    for i, name in enumerate(chunk.names):
        try:
            code_of[i] = table.code(name)
        except ValueError as exc:
            pos = data.find(name.encode())
            raise InputFormatError(path, first_line + data.count(b"\n", 0, pos), str(exc)) from None
    codes = code_of[chunk.field].astype(np.uint8)
    for c in np.unique(codes):
        table.max_value[c] = max(int(table.max_value[c]), int(chunk.value[codes == c].max()))
    return chunk.uids, chunk.row_nnz, codes, chunk.value


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
# CSV files: ads and pairs
# ---------------------------------------------------------------------------
#: The largest id of any file: every id (uid, aid, every ad column, every user-field value) is an
#: integer from 0 to 2^31 - 1, as the user file's parser stores them (int32).
ID_MAX = INT32_MAX


def read_int_csv(path: str | os.PathLike[str], columns: tuple[str, ...]) -> pd.DataFrame:
    """Read an all-integer CSV with an exact header (plain or gzip); errors name file and line.

    Every column but ``label`` holds ids, which must be integers from 0 to
    :data:`ID_MAX`. A blank line is an error (it would shift every later line).
    """
    path_s = str(path)
    if os.path.getsize(path) == 0:
        raise InputFormatError(path_s, None, "empty file")
    with open_binary(path) as fh:
        header = fh.readline().decode("utf-8", "replace").strip().lstrip("\ufeff")
    if header.split(",") != list(columns):
        raise InputFormatError(
            path_s, 1, f"wrong header {header!r}; expected {','.join(columns)!r}"
        )
    kinds = {c: "label" if c == "label" else "id" for c in columns}
    try:
        with open_binary(path) as fh:
            df = pd.read_csv(fh, dtype=np.int64, engine="c", skip_blank_lines=False)
    except (ValueError, OverflowError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise locate_csv_problem(path_s, kinds) or InputFormatError(path_s, None, str(exc)) from None
    if df.empty:
        raise InputFormatError(path_s, None, "no data rows after the header")
    for col, kind in kinds.items():
        if kind == "id":
            v = df[col].to_numpy()
            bad = np.flatnonzero((v < 0) | (v > ID_MAX))
            if len(bad):
                raise InputFormatError(path_s, int(bad[0]) + 2, _id_problem(col, int(v[bad[0]])))
    return df


def _id_problem(column: str, value: int | str) -> str:
    return f"{column} {value} is out of range: ids are integers from 0 to {ID_MAX}"


def locate_csv_problem(path: str, kinds: dict[str, str]) -> InputFormatError | None:
    """The first malformed line of a CSV (after its header), by a slow line-by-line scan.

    ``kinds`` gives each column, in order, as ``"id"`` (an integer from 0 to
    :data:`ID_MAX`), ``"label"`` (an integer) or ``"number"`` (a float). Used
    once a fast reader has failed, to say where and why; ``None`` when every
    line is fine.
    """
    columns = list(kinds)
    with open_binary(path) as fh:
        fh.readline()
        for line_no, raw in enumerate(fh, start=2):
            text = raw.decode("utf-8", "replace").strip()
            if not text:
                return InputFormatError(path, line_no, "blank line")
            cells = text.split(",")
            if len(cells) != len(columns):
                return InputFormatError(path, line_no, f"expected {len(columns)} values, got {len(cells)}")
            for col, cell in zip(columns, cells):
                try:
                    value = float(cell) if kinds[col] == "number" else int(cell)
                except ValueError:
                    what = "a number" if kinds[col] == "number" else "an integer"
                    return InputFormatError(path, line_no, f"{col} {cell!r} is not {what}")
                if kinds[col] == "id" and not 0 <= value <= ID_MAX:
                    return InputFormatError(path, line_no, _id_problem(col, cell))
    return None


def pair_keys(aid: np.ndarray, uid: np.ndarray) -> np.ndarray:
    """One int64 per ``(aid, uid)`` pair (both are ids below 2^31, so the key is exact)."""
    return (np.asarray(aid, dtype=np.int64) << 31) | np.asarray(uid, dtype=np.int64)


def first_repeats(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows whose key appeared on an earlier row, and for each that earlier row (both in row order)."""
    order = np.argsort(keys, kind="stable")
    same = np.flatnonzero(keys[order][1:] == keys[order][:-1])
    later, earlier = order[same + 1], order[same]
    by_row = np.argsort(later, kind="stable")
    return later[by_row], earlier[by_row]


def read_ads_csv(path: str | os.PathLike[str]) -> AdTable:
    """Read ``adFeature.csv``, sorted by aid; a repeated aid is an error."""
    df = read_int_csv(path, AD_COLUMNS)
    dup = df["aid"].duplicated()
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        raise InputFormatError(str(path), i + 2, f"aid {int(df['aid'].iloc[i])} appears twice")
    df = df.sort_values("aid", kind="stable").reset_index(drop=True)
    return AdTable(aids=df["aid"].to_numpy(), frame=df)


def read_pairs_csv(
    path: str | os.PathLike[str],
    columns: tuple[str, ...],
    ads: AdTable,
    users: UserMatrix,
) -> Pairs:
    """Read ``train.csv`` or ``test1.csv`` and resolve its aids and uids to table rows.

    ``columns`` is the expected header (:data:`pipeline.schema.TRAIN_COLUMNS`
    gives labelled pairs, with ``-1`` read as 0). An aid not in ``ads`` or a
    uid not in ``users`` is an error naming the line.
    """
    path_s = str(path)
    df = read_int_csv(path, columns)
    aid = df["aid"].to_numpy()
    uid = df["uid"].to_numpy()
    label = None
    if "label" in columns:
        raw = df["label"].to_numpy()
        bad = (raw != 1) & (raw != -1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InputFormatError(path_s, i + 2, f"label {int(raw[i])} is not 1 or -1")
        label = (raw == 1).astype(np.int8)
    repeats, first = first_repeats(pair_keys(aid, uid))
    if len(repeats) and label is not None:
        i, j = int(repeats[0]), int(first[0])
        other = " with the other label" if label[i] != label[j] else ""
        raise InputFormatError(path_s, i + 2, f"pair (aid {aid[i]}, uid {uid[i]}) already on line {j + 2}{other} "
                               f"({len(repeats):,} repeated pairs in all): each training pair must appear once")
    if len(repeats):
        logger.warning("%s: %s repeated (aid, uid) pairs (first: line %d repeats line %d); every row is scored",
                       path_s, f"{len(repeats):,}", int(repeats[0]) + 2, int(first[0]) + 2)
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
    return Pairs(aid=aid, uid=uid, aid_idx=aid_idx.astype(np.int32), user_row=rows.astype(np.int64), label=label)
