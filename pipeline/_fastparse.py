"""Compiled fast path of the ``userFeature.data`` parser (private).

:func:`scan_chunk` reads a chunk of whole lines in one compiled pass: it
tokenises, resolves field names through a persistent hash table (checked byte
for byte), and reads the integer values. It *detects* every malformed line but
does not describe it: on any anomaly it returns ``False`` and the caller
re-parses the chunk with the vectorised NumPy parser (:mod:`pipeline._parse`),
which raises the precise file:line error. The good path is therefore compiled
and the error messages have one source.

:func:`remap_sort_rows` turns (field, id) values into sorted, de-duplicated
column indices per row through dense per-field lookup tables.
"""

from __future__ import annotations

import numba
import numpy as np
from core import sorted_index

__all__ = ["NameTable", "filter_lines", "remap_rows", "remap_sort_rows", "scan_chunk", "mark_seen"]

_SLOTS = 1024
_MAX_NAMES = 255
_MAX_NAME_LEN = 64
_FNV_OFFSET = np.uint64(14695981039346656037)
_FNV_PRIME = np.uint64(1099511628211)
_INT32_MAX = 2147483647


@numba.njit(cache=True, inline="always")
def _is_space(c: int) -> bool:
    return c == 32 or c == 9 or c == 13


@numba.njit(cache=True, inline="always")
def _is_name_char(c: int) -> bool:
    return (48 <= c <= 57) or (65 <= c <= 90) or (97 <= c <= 122) or c == 95


@numba.njit(cache=True)
def _hash(buf: np.ndarray, start: int, stop: int) -> np.uint64:
    h = _FNV_OFFSET
    for k in range(start, stop):
        h = (h ^ np.uint64(buf[k])) * _FNV_PRIME
    return h


@numba.njit(cache=True)
def _lookup_or_add(
    buf: np.ndarray, start: int, length: int, h: np.uint64,
    slot_code: np.ndarray, name_len: np.ndarray, name_bytes: np.ndarray, n_names: np.ndarray,
) -> int:
    """Code of the name ``buf[start:start+length]``; adds it if new; -1 if unsupported."""
    slot = np.int64(h & np.uint64(_SLOTS - 1))  # _SLOTS is a power of two
    while True:
        code = slot_code[slot]
        if code < 0:
            break
        if name_len[code] == length:
            same = True
            for k in range(length):
                if name_bytes[code, k] != buf[start + k]:
                    same = False
                    break
            if same:
                return code
        slot = (slot + 1) & (_SLOTS - 1)
    if length > _MAX_NAME_LEN or n_names[0] >= _MAX_NAMES:
        return -1
    code = n_names[0]
    n_names[0] += 1
    slot_code[slot] = code
    name_len[code] = length
    for k in range(length):
        name_bytes[code, k] = buf[start + k]
    return code


@numba.njit(cache=True, nogil=True)
def _scan(
    buf: np.ndarray,
    slot_code: np.ndarray, name_len: np.ndarray, name_bytes: np.ndarray, n_names: np.ndarray,
    single: np.ndarray, seen_line: np.ndarray,
    uids: np.ndarray, row_nnz: np.ndarray, codes: np.ndarray, values: np.ndarray, max_value: np.ndarray,
) -> tuple[bool, int, int]:
    n = buf.size
    i = 0
    line = 0
    nv = 0
    seen_line[:] = -1
    while i < n:
        line_start = nv
        n_groups = 0
        has_uid = False
        after_bar = False
        while True:
            while i < n and _is_space(buf[i]):
                i += 1
            if i >= n or buf[i] == 10:
                if n_groups == 0 or after_bar:
                    return False, line, nv  # empty line, or a group after '|' is missing
                break
            if buf[i] == 124:
                return False, line, nv  # empty group
            c = buf[i]
            if not ((65 <= c <= 90) or (97 <= c <= 122)):
                return False, line, nv  # a group must start with a field name
            s = i
            while i < n and _is_name_char(buf[i]):
                i += 1
            if i < n and not (_is_space(buf[i]) or buf[i] == 10 or buf[i] == 124):
                return False, line, nv  # invalid character in a name
            code = _lookup_or_add(buf, s, i - s, _hash(buf, s, i), slot_code, name_len, name_bytes, n_names)
            if code < 0 or seen_line[code] == line:
                return False, line, nv  # unsupported name, or a field repeated on the line
            seen_line[code] = line
            count = 0
            last = 0
            while True:
                while i < n and _is_space(buf[i]):
                    i += 1
                if i >= n or buf[i] == 10 or buf[i] == 124:
                    break
                v = 0
                d = 0
                while i < n and 48 <= buf[i] <= 57:
                    v = v * 10 + (buf[i] - 48)
                    d += 1
                    i += 1
                    if d > 10:
                        return False, line, nv
                if d == 0 or v > _INT32_MAX:
                    return False, line, nv
                if i < n and not (_is_space(buf[i]) or buf[i] == 10 or buf[i] == 124):
                    return False, line, nv  # a non-digit inside a value
                if code != 0:
                    codes[nv] = code
                    values[nv] = v
                    nv += 1
                    if v > max_value[code]:
                        max_value[code] = v
                last = v
                count += 1
            if count == 0 or (single[code] and count != 1):
                return False, line, nv
            if code == 0:
                has_uid = True
                uids[line] = last
            n_groups += 1
            if i < n and buf[i] == 124:
                i += 1
                after_bar = True
                continue
            after_bar = False
            break
        if not has_uid:
            return False, line, nv
        row_nnz[line] = nv - line_start
        line += 1
        if i < n and buf[i] == 10:
            i += 1
    return True, line, nv


class NameTable:
    """Field names <-> codes, shared by every chunk of one file.

    Code 0 is ``uid``; the known fields are registered up front with their
    single-valued flag; unknown names are appended as the scan meets them.
    """

    def __init__(self, known: list[str], single: set[str]) -> None:
        self.slot_code = np.full(_SLOTS, -1, dtype=np.int32)
        self.name_len = np.zeros(_MAX_NAMES, dtype=np.int64)
        self.name_bytes = np.zeros((_MAX_NAMES, _MAX_NAME_LEN), dtype=np.uint8)
        self.n_names = np.zeros(1, dtype=np.int64)
        self.single = np.zeros(_MAX_NAMES, dtype=np.bool_)
        self.max_value = np.full(_MAX_NAMES, -1, dtype=np.int64)
        self.seen_line = np.full(_MAX_NAMES, -1, dtype=np.int64)
        for name in known:
            self.code(name)
            self.single[self.code(name)] = name in single

    @property
    def names(self) -> list[str]:
        """Names by code."""
        return [
            bytes(self.name_bytes[c, : self.name_len[c]]).decode("ascii")
            for c in range(int(self.n_names[0]))
        ]

    def code(self, name: str) -> int:
        """Code of ``name``, registering it if new."""
        b = np.frombuffer(name.encode("ascii"), dtype=np.uint8)
        code = _lookup_or_add(
            b, 0, len(b), np.uint64(_hash(b, 0, len(b))), self.slot_code, self.name_len, self.name_bytes,
            self.n_names,
        )
        if code < 0:
            raise ValueError(
                f"field name {name[:80]!r} is longer than {_MAX_NAME_LEN} characters, "
                f"or the file has more than {_MAX_NAMES} fields"
            )
        return int(code)


def scan_chunk(
    data: bytes, table: NameTable
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """Scan whole lines; ``None`` when any line is malformed (re-parse to explain).

    Returns
    -------
    (uids, row_nnz, codes, values) or None
        Per line: uid and number of values; per value: field code (uint8) and id (int32).
    """
    buf = np.frombuffer(data, dtype=np.uint8)
    n_lines_max = data.count(b"\n") + 1
    n_values_max = len(buf) // 2 + 1
    uids = np.empty(n_lines_max, dtype=np.int64)
    row_nnz = np.empty(n_lines_max, dtype=np.int64)
    codes = np.empty(n_values_max, dtype=np.uint8)
    values = np.empty(n_values_max, dtype=np.int32)
    max_before = table.max_value.copy()
    n_before = int(table.n_names[0])
    ok, n_lines, nv = _scan(
        buf, table.slot_code, table.name_len, table.name_bytes, table.n_names, table.single,
        table.seen_line, uids, row_nnz, codes, values, table.max_value,
    )
    if not ok:
        table.max_value[:] = max_before
        _forget_names(table, n_before)
        return None
    return uids[:n_lines].copy(), row_nnz[:n_lines].copy(), codes[:nv].copy(), values[:nv].copy()


def _forget_names(table: NameTable, n_keep: int) -> None:
    """Drop names a failed scan registered (the re-parse decides about them)."""
    n = int(table.n_names[0])
    if n == n_keep:
        return
    table.slot_code[table.slot_code >= n_keep] = -1
    table.name_len[n_keep:n] = 0
    table.name_bytes[n_keep:n] = 0
    table.n_names[0] = n_keep
    # re-insert survivors so that probe chains stay intact
    survivors = [(c, bytes(table.name_bytes[c, : table.name_len[c]])) for c in range(n_keep)]
    table.slot_code[:] = -1
    for c, b in survivors:
        arr = np.frombuffer(b, dtype=np.uint8)
        slot = int(np.uint64(_hash(arr, 0, len(arr))) & np.uint64(_SLOTS - 1))
        while table.slot_code[slot] >= 0:
            slot = (slot + 1) % _SLOTS
        table.slot_code[slot] = c


@numba.njit(cache=True, nogil=True)
def mark_seen(codes: np.ndarray, values: np.ndarray, base: np.ndarray, seen: np.ndarray) -> None:
    """``seen[base[code] + value] = True`` for values of fields with a dense table."""
    for k in range(codes.size):
        b = base[codes[k]]
        if b >= 0:
            seen[b + values[k]] = True


@numba.njit(cache=True, nogil=True)
def remap_rows(
    indptr: np.ndarray, indices: np.ndarray, rows: np.ndarray, lut: np.ndarray, sort_rows: bool
) -> tuple[np.ndarray, np.ndarray, int]:
    """Rows ``rows`` of a CSR pattern with every column ``c`` renamed ``lut[c]``, dropped where ``lut[c] < 0``.

    Returns the new ``indptr`` (int64) and ``indices`` (int32) and the number
    of stored columns dropped; ``sort_rows`` sorts each row's new columns
    (needed unless ``lut`` keeps their order).
    """
    n = len(rows)
    new_indptr = np.zeros(n + 1, dtype=np.int64)
    for i in range(n):
        r = rows[i]
        kept = 0
        for p in range(indptr[r], indptr[r + 1]):
            if lut[indices[p]] >= 0:
                kept += 1
        new_indptr[i + 1] = new_indptr[i] + kept
    new_indices = np.empty(new_indptr[n], dtype=np.int32)
    dropped = 0
    for i in range(n):
        r = rows[i]
        w = new_indptr[i]
        for p in range(indptr[r], indptr[r + 1]):
            c = lut[indices[p]]
            if c >= 0:
                new_indices[w] = c
                w += 1
            else:
                dropped += 1
        if sort_rows:
            new_indices[new_indptr[i] : w].sort()
    return new_indptr, new_indices, dropped


@numba.njit(cache=True, nogil=True)
def remap_sort_rows(
    codes: np.ndarray, values: np.ndarray, row_nnz: np.ndarray, base: np.ndarray, lut: np.ndarray,
    cols: np.ndarray, df: np.ndarray,
) -> tuple[np.ndarray, int]:
    """Columns of every value, sorted and de-duplicated within each row.

    ``cols`` must already hold the columns of values whose field has no dense
    table (``base < 0``); the others are looked up in ``lut``. Returns the new
    per-row counts and the number of repeated ids removed; ``cols`` is
    compacted in place and ``df`` counts each kept column.
    """
    new_nnz = np.empty_like(row_nnz)
    read = 0
    write = 0
    removed = 0
    for r in range(row_nnz.size):
        start = write
        stop = read + row_nnz[r]
        for k in range(read, stop):
            b = base[codes[k]]
            cols[write] = lut[b + values[k]] if b >= 0 else cols[k]
            write += 1
        read = stop
        seg = cols[start:write]
        seg.sort()
        keep = start
        for k in range(start, write):
            if k == start or cols[k] != cols[keep - 1]:
                cols[keep] = cols[k]
                df[cols[k]] += 1
                keep += 1
            else:
                removed += 1
        write = keep
        new_nnz[r] = keep - start
    return new_nnz, removed


@numba.njit(cache=True, nogil=True)
def _line_uids(buf: np.ndarray, n_lines: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """Start, stop and uid (``-1``: unreadable) of the first ``n_lines`` (at most) lines of ``buf``,
    and whether they were all of its lines."""
    n = len(buf)
    starts = np.empty(n_lines, dtype=np.int64)
    stops = np.empty(n_lines, dtype=np.int64)
    uids = np.empty(n_lines, dtype=np.int64)  # set per line: the room may be far larger than the lines
    line, pos = 0, 0
    while pos < n and line < n_lines:
        start = pos
        end = start
        while end < n and buf[end] != 10:
            end += 1
        starts[line], stops[line], uids[line] = start, min(end + 1, n), -1
        # "uid <digits>|" or "uid <digits>" at the start of the line; anything else stays -1
        if end - start > 4 and buf[start] == 117 and buf[start + 1] == 105 and buf[start + 2] == 100 \
                and buf[start + 3] == 32:
            k, value, ok = start + 4, 0, False
            while k < end and 48 <= buf[k] <= 57 and value < 10**15:
                value = value * 10 + (buf[k] - 48)
                k += 1
                ok = True
            if ok and (k == end or buf[k] == 124 or buf[k] == 13):
                uids[line] = value
        line += 1
        pos = end + 1
    return starts[:line], stops[:line], uids[:line], pos >= n


@numba.njit(cache=True, nogil=True)
def _gather(buf: np.ndarray, starts: np.ndarray, stops: np.ndarray, keep: np.ndarray) -> np.ndarray:
    total = 0
    for i in range(len(starts)):
        if keep[i]:
            total += stops[i] - starts[i]
    out = np.empty(total, dtype=np.uint8)
    pos = 0
    for i in range(len(starts)):
        if keep[i]:
            for k in range(starts[i], stops[i]):
                out[pos] = buf[k]
                pos += 1
    return out


def filter_lines(data: bytes, keep_uids: np.ndarray) -> tuple[bytes, int]:
    """The lines of ``data`` whose uid is in ``keep_uids`` (sorted), and how many lines were dropped.

    A line whose uid cannot be read is kept, so the parser still reports it.
    """
    buf = np.frombuffer(data, dtype=np.uint8)
    # room for lines of 6 bytes ("uid 1\n", the shortest with a uid); shorter ones: count them first
    starts, stops, uids, whole = _line_uids(buf, len(buf) // 6 + 2)
    if not whole:
        starts, stops, uids, whole = _line_uids(buf, data.count(b"\n") + 1)
    keep = (uids < 0) | (sorted_index(keep_uids, uids) >= 0)
    return _gather(buf, starts, stops, keep).tobytes(), int(len(keep) - keep.sum())
