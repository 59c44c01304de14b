"""Vectorised parser of ``userFeature.data`` byte chunks (private).

A chunk is a run of whole lines. The parser never loops over lines in Python:
it classifies every byte with NumPy, finds the tokens, and reads the field
names (hashed, then checked byte for byte) and the integer values column-wise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core import InputFormatError

__all__ = ["ParsedChunk", "parse_chunk"]

INT32_MAX = np.iinfo(np.int32).max
_NL, _BAR = 10, 124
_IS_SPACE = np.zeros(256, dtype=bool)
_IS_SPACE[[32, 9, 13]] = True  # space, tab, CR (CRLF files are fine)
_IS_DIGIT = np.zeros(256, dtype=bool)
_IS_DIGIT[48:58] = True
_IS_NAME = np.zeros(256, dtype=bool)
_IS_NAME[48:58] = _IS_NAME[65:91] = _IS_NAME[97:123] = _IS_NAME[95] = True
_IS_LETTER = np.zeros(256, dtype=bool)
_IS_LETTER[65:91] = _IS_LETTER[97:123] = True


@dataclass
class ParsedChunk:
    """What one chunk holds, in file order.

    Attributes
    ----------
    n_lines : int
        Lines in the chunk.
    uids : ndarray of int64, shape (n_lines,)
        The uid of each line.
    row_nnz : ndarray of int64, shape (n_lines,)
        Number of feature values on each line (uid excluded).
    field : ndarray of int64
        Index into ``names`` of each value's field.
    value : ndarray of int32
        The values, line by line, in file order.
    names : list of str
        Field names seen in this chunk (``uid`` included).
    """

    n_lines: int
    uids: np.ndarray
    row_nnz: np.ndarray
    field: np.ndarray
    value: np.ndarray
    names: list[str]


def _fail(path: str, first_line: int, local_line: int, message: str) -> InputFormatError:
    return InputFormatError(path, first_line + int(local_line), message)


def _token_text(buf: np.ndarray, start: int, end: int) -> str:
    text = bytes(buf[start : min(end, start + 40)]).decode("utf-8", "replace")
    return text + ("..." if end - start > 40 else "")


def parse_chunk(
    data: bytes, path: str, first_line: int, single_valued: frozenset[str]
) -> ParsedChunk:
    """Parse whole lines of ``userFeature.data``.

    Parameters
    ----------
    data : bytes
        Complete lines (the last may lack its newline).
    path : str
        File name, for error messages.
    first_line : int
        1-based number of the chunk's first line in the file.
    single_valued : frozenset of str
        Fields that must hold exactly one value.

    Raises
    ------
    InputFormatError
        Naming the file and line of the first problem found.
    """
    buf = np.frombuffer(data, dtype=np.uint8)
    if len(buf) == 0:
        raise InputFormatError(path, first_line, "empty line")
    is_nl = buf == _NL
    nl_pos = np.flatnonzero(is_nl)
    n_lines = len(nl_pos) + (0 if is_nl[-1] else 1)
    is_gsep = is_nl | (buf == _BAR)
    is_sep = is_gsep | _IS_SPACE[buf]

    tok_start = np.flatnonzero(~is_sep & np.r_[True, is_sep[:-1]])
    tok_end = np.flatnonzero(~is_sep & np.r_[is_sep[1:], True]) + 1
    tok_len = tok_end - tok_start
    gsep_pos = np.flatnonzero(is_gsep)
    tok_group = np.searchsorted(gsep_pos, tok_start)  # groups are numbered by separators before
    tok_line = np.searchsorted(nl_pos, tok_start)

    # every group (text between '|' / newline) holds a name and at least one value
    n_groups = len(gsep_pos) + (0 if is_nl[-1] else 1)
    group_tokens = np.bincount(tok_group, minlength=n_groups)[:n_groups]
    group_line = np.searchsorted(nl_pos, np.r_[0, gsep_pos + 1][:n_groups])  # (the last line may lack its newline)
    if (group_tokens == 0).any():
        g = int(np.flatnonzero(group_tokens == 0)[0])
        line = int(group_line[g])
        if np.bincount(tok_line, minlength=n_lines)[line] == 0:
            raise _fail(path, first_line, line, "empty line")
        raise _fail(path, first_line, line, "empty group (nothing between '|' separators)")

    is_name = np.r_[True, tok_group[1:] != tok_group[:-1]]
    name_idx = np.flatnonzero(is_name)
    val_idx = np.flatnonzero(~is_name)

    # --- names: must look like identifiers; hash them, then verify byte for byte
    n_start, n_len = tok_start[name_idx], tok_len[name_idx]
    bad_first = ~_IS_LETTER[buf[n_start]]
    if bad_first.any():
        t = int(np.flatnonzero(bad_first)[0])
        text = _token_text(buf, n_start[t], n_start[t] + n_len[t])
        raise _fail(
            path, first_line, tok_line[name_idx[t]],
            f"expected a field name at the start of a group, got {text!r}"
            + (" (is 'uid' missing?)" if text[:1].isdigit() else ""),
        )
    if (group_tokens < 2).any():
        g = int(np.flatnonzero(group_tokens < 2)[0])
        t = int(np.searchsorted(tok_group, g))
        name = _token_text(buf, tok_start[t], tok_end[t])
        raise _fail(path, first_line, group_line[g], f"empty group: field {name!r} has no values")
    max_name = int(n_len.max())
    h = n_len.astype(np.uint64)
    cols = []
    for d in range(max_name):
        has = d < n_len
        byte = np.where(has, buf[np.minimum(n_start + d, len(buf) - 1)], 0)
        cols.append(byte)
        h = h * np.uint64(1099511628211) ^ byte.astype(np.uint64)
    bytes_mat = np.stack(cols, axis=1)  # (names, max_name), zero padded
    bad_name = ~_IS_NAME[bytes_mat] & (np.arange(max_name)[None, :] < n_len[:, None])
    if bad_name.any():
        t = int(np.flatnonzero(bad_name.any(axis=1))[0])
        text = _token_text(buf, n_start[t], n_start[t] + n_len[t])
        raise _fail(path, first_line, tok_line[name_idx[t]], f"invalid field name {text!r}")
    uniq, rep, name_code = np.unique(h, return_index=True, return_inverse=True)
    if not (bytes_mat == bytes_mat[rep][name_code]).all():  # pragma: no cover - 64-bit collision
        raise RuntimeError("field name hash collision")
    names = [bytes(bytes_mat[r, : n_len[r]]).decode("ascii") for r in rep]

    # --- values: digits only, fit int32
    v_start, v_len = tok_start[val_idx], tok_len[val_idx]
    v_line = tok_line[val_idx]
    too_long = v_len > 10
    value = np.zeros(len(val_idx), dtype=np.int64)
    bad = np.zeros(len(val_idx), dtype=bool)
    for d in range(int(min(v_len.max(initial=1), 10))):
        has = d < v_len
        byte = buf[np.minimum(v_start + d, len(buf) - 1)]
        bad |= has & ~_IS_DIGIT[byte]
        value = np.where(has, value * 10 + (byte.astype(np.int64) - 48), value)
    if bad.any():
        t = int(np.flatnonzero(bad)[0])
        text = _token_text(buf, v_start[t], v_start[t] + v_len[t])
        raise _fail(path, first_line, v_line[t], f"value {text!r} is not a non-negative integer")
    too_big = too_long | (value > INT32_MAX)
    if too_big.any():
        t = int(np.flatnonzero(too_big)[0])
        text = _token_text(buf, v_start[t], v_start[t] + v_len[t])
        raise _fail(path, first_line, v_line[t],
                    f"value {text} is out of range: ids are integers from 0 to {INT32_MAX}")

    # --- structure per line: one uid, no repeated field, single-valued fields hold one value
    n_names = len(names)
    group_name = np.maximum.accumulate(np.where(is_name, np.arange(len(tok_start)), 0))
    v_field = name_code[np.searchsorted(name_idx, group_name[val_idx])]
    line_field = tok_line[name_idx] * n_names + name_code
    order = np.argsort(line_field, kind="stable")
    dup = np.flatnonzero(line_field[order][1:] == line_field[order][:-1])
    if len(dup):
        t = order[dup[0]]
        raise _fail(
            path, first_line, tok_line[name_idx[t]], f"field {names[name_code[t]]!r} appears twice"
        )
    per_group_values = group_tokens[tok_group[name_idx]] - 1
    for code, name in enumerate(names):
        if name in single_valued or name == "uid":
            many = (name_code == code) & (per_group_values != 1)
            if many.any():
                t = int(np.flatnonzero(many)[0])
                raise _fail(
                    path, first_line, tok_line[name_idx[t]],
                    f"field {name!r} takes one value, got {int(per_group_values[t])}",
                )
    uid_code = names.index("uid") if "uid" in names else -1
    has_uid = np.zeros(n_lines, dtype=bool)
    if uid_code >= 0:
        has_uid[tok_line[name_idx[name_code == uid_code]]] = True
    if not has_uid.all():
        raise _fail(path, first_line, int(np.flatnonzero(~has_uid)[0]), "line has no 'uid' field")

    is_uid_value = v_field == uid_code
    uids = np.empty(n_lines, dtype=np.int64)
    uids[v_line[is_uid_value]] = value[is_uid_value]
    keep = ~is_uid_value
    row_nnz = np.bincount(v_line[keep], minlength=n_lines).astype(np.int64)
    return ParsedChunk(
        n_lines=n_lines,
        uids=uids,
        row_nnz=row_nnz,
        field=v_field[keep],
        value=value[keep].astype(np.int32),
        names=names,
    )
