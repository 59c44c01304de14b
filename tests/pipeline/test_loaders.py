"""Chunked loaders: invariance, equality with scikit-learn, bad input."""

from __future__ import annotations

import gzip
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.preprocessing import OneHotEncoder

from core import InputFormatError
from pipeline.stages.load import run_load
from pipeline.files import read_user_matrix, write_user_matrix
from pipeline.readers import parse_users
from tests.conftest import USER_LINES, write_users


def _same(a, b) -> None:  # noqa: ANN001
    assert np.array_equal(a.indptr, b.indptr)
    assert np.array_equal(np.asarray(a.indices), np.asarray(b.indices))
    assert np.array_equal(a.uids, b.uids)
    assert [f.name for f in a.fields] == [f.name for f in b.fields]
    for fa, fb in zip(a.fields, b.fields):
        assert fa.offset == fb.offset and fa.kind == fb.kind
        assert np.array_equal(fa.values, fb.values) and np.array_equal(fa.df, fb.df)


@pytest.mark.parametrize("chunk", [1, 7])
def test_chunk_size_does_not_change_the_result(tiny_raw: Path, chunk: int) -> None:
    whole = parse_users(tiny_raw / "userFeature.data", chunk_lines=10**9)
    _same(parse_users(tiny_raw / "userFeature.data", chunk_lines=chunk), whole)


def test_matrix_holds_exactly_the_ids_of_each_line(tiny_raw: Path) -> None:
    m = parse_users(tiny_raw / "userFeature.data", chunk_lines=500)
    lines = (tiny_raw / "userFeature.data").read_text().splitlines()
    for row in range(0, len(lines), 37):
        groups = dict(g.split(" ", 1) for g in lines[row].split("|"))
        assert m.uids[row] == int(groups.pop("uid"))
        cols = m.indices[m.indptr[row] : m.indptr[row + 1]]
        assert np.all(np.diff(cols) > 0)  # sorted, no repeats
        got: dict[str, set[int]] = {}
        for c in cols:
            f = next(f for f in m.fields if f.offset <= c < f.stop)
            got.setdefault(f.name, set()).add(int(f.values[c - f.offset]))
        assert got == {k: {int(v) for v in vals.split(" ")} for k, vals in groups.items()}


def test_equals_countvectorizer_and_onehotencoder(tiny_raw: Path) -> None:
    """The hand-written builder gives scikit-learn's matrices, block by block."""
    path = tiny_raw / "userFeature.data"
    m = parse_users(path)
    X = m.csr().toarray()
    rows = [dict(g.split(" ", 1) for g in line.split("|")) for line in path.read_text().splitlines()]
    for f in m.fields:
        block = X[:, f.offset : f.stop]
        docs = [r.get(f.name, "") for r in rows]
        if f.kind == "multi":
            cv = CountVectorizer(token_pattern=r"\S+", binary=True)  # keeps one-character ids
            ref = cv.fit_transform(docs).toarray()
            order = [cv.vocabulary_[str(v)] for v in f.values]  # our columns are numeric order
            assert np.array_equal(block, ref[:, order]), f.name
        else:
            have = np.array([d != "" for d in docs])
            enc = OneHotEncoder(dtype=np.float32)
            ref = enc.fit_transform(np.array([[int(d)] for d, h in zip(docs, have) if h])).toarray()
            assert np.array_equal(enc.categories_[0], f.values), f.name
            assert np.array_equal(block[have], ref) and not block[~have].any(), f.name
        assert np.array_equal(block.sum(axis=0), f.df), f.name


def test_gzip_crlf_and_missing_final_newline_read_the_same(tmp_path: Path) -> None:
    plain = parse_users(write_users(tmp_path / "a.data", USER_LINES))
    crlf = parse_users(write_users(tmp_path / "b.data", USER_LINES, newline="\r\n", final=False))
    gz = tmp_path / "c.data.gz"
    with gzip.open(gz, "wb") as fh:
        fh.write(("\n".join(USER_LINES)).encode())
    _same(crlf, plain)
    _same(parse_users(gz, chunk_lines=2), plain)


def test_single_characters_and_zero_are_tokens(tmp_path: Path) -> None:
    m = parse_users(write_users(tmp_path / "u.data", USER_LINES))
    assert 0 in m.block("ct").values.tolist() and 1 in m.block("ct").values.tolist()
    assert m.block("interest3").values.tolist() == [7]
    assert m.block("house").values.tolist() == [1] and m.block("house").df.tolist() == [2]
    assert m.block("kw1").df[m.block("kw1").values.tolist().index(276966)] == 2


def test_unknown_field_is_kept_and_logged_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    lines = [USER_LINES[0] + "|newField 5 6", USER_LINES[1] + "|newField 6", USER_LINES[2]]
    with caplog.at_level(logging.WARNING):
        m = parse_users(write_users(tmp_path / "u.data", lines), chunk_lines=1)
    assert m.field_names[-1] == "newField" and m.block("newField").values.tolist() == [5, 6]
    assert sum("newField" in r.message for r in caplog.records) == 1


def test_repeated_id_in_a_list_counts_once(tmp_path: Path) -> None:
    m = parse_users(write_users(tmp_path / "u.data", ["uid 1|ct 3 1 3", "uid 2|ct 3"]))
    assert m.block("ct").df.tolist() == [1, 2]
    assert m.indptr.tolist() == [0, 2, 3]


def test_save_and_load_round_trip(tmp_path: Path, tiny_raw: Path) -> None:
    m = parse_users(tiny_raw / "userFeature.data")
    write_user_matrix(m, tmp_path / "users")
    back = read_user_matrix(tmp_path / "users")
    _same(back, m)
    assert np.array_equal(back.rows_of(m.uids[[5, 0, 9]]), [5, 0, 9])
    assert back.rows_of(np.array([-3]))[0] == -1


# ---------------------------------------------------------------------------
# bad input: a clear error naming file and line, nothing written
# ---------------------------------------------------------------------------
BAD_USER_LINES = {
    "no uid": (["uid 1|age 2", "age 3|gender 1"], 2, "no 'uid'"),
    "uid value without name": (["uid 1|age 2", "26325489|age 4"], 2, "is 'uid' missing"),
    "non-integer": (["uid 1|age 2", "uid 2|kw1 12 x3"], 2, "'x3' is not a non-negative integer"),
    "negative": (["uid 1|kw1 -4"], 1, "'-4'"),
    "empty group": (["uid 1|age 2", "uid 2|kw1|age 3"], 2, "field 'kw1' has no values"),
    "empty group at end": (["uid 1|kw1"], 1, "'kw1' has no values"),
    "double bar": (["uid 1||age 3"], 1, "empty group"),
    "blank line": (["uid 1|age 2", "", "uid 3|age 1"], 2, "empty line"),
    "duplicated uid": (["uid 1|age 2", "uid 2|age 2", "uid 1|age 3"], 3, "uid 1 already appears on line 1"),
    "repeated field": (["uid 1|age 2|age 3"], 1, "'age' appears twice"),
    "two ages": (["uid 1|age 2 3"], 1, "'age' takes one value, got 2"),
    "huge id": (["uid 1|kw1 99999999999"], 1, "out of range"),
}


@pytest.mark.parametrize("case", list(BAD_USER_LINES))
@pytest.mark.parametrize("chunk", [1, 1000])
def test_bad_user_lines(tmp_path: Path, case: str, chunk: int) -> None:
    lines, line_no, message = BAD_USER_LINES[case]
    path = write_users(tmp_path / "userFeature.data", lines)
    with pytest.raises(InputFormatError) as err:
        parse_users(path, chunk_lines=chunk)
    assert err.value.path == str(path) and err.value.line == line_no
    assert message in str(err.value) and f"{path}:{line_no}:" in str(err.value)


def test_empty_user_file(tmp_path: Path) -> None:
    path = write_users(tmp_path / "userFeature.data", [], final=False)
    with pytest.raises(InputFormatError, match="empty file"):
        parse_users(path)


def _copy_raw(tiny_raw: Path, dst: Path) -> Path:
    shutil.copytree(tiny_raw, dst)
    return dst


def _edit_line(path: Path, line_no: int, new: str) -> None:
    lines = path.read_text().splitlines()
    lines[line_no - 1] = new
    path.write_text("\n".join(lines) + "\n")


def _load(raw: Path, out: Path) -> None:
    run_load(raw / "userFeature.data", raw / "adFeature.csv", raw / "train.csv", raw / "test1.csv", out)


BAD_CSV = {
    "label outside": ("train.csv", 5, lambda l: l.rsplit(",", 1)[0] + ",0", "label 0 is not 1 or -1"),
    "unknown aid": ("train.csv", 4, lambda l: "999999," + l.split(",", 1)[1], "aid 999999 is not in adFeature.csv"),
    "unknown uid": ("test1.csv", 3, lambda l: l.split(",")[0] + ",5", "uid 5 is not in userFeature.data"),
    "wrong header": ("train.csv", 1, lambda l: "aid,user,label", "wrong header"),
    "non-integer cell": ("train.csv", 6, lambda l: l.split(",")[0] + ",abc,1", "'abc' is not an integer"),
    "missing cell": ("test1.csv", 7, lambda l: l.split(",")[0], "expected 2 values, got 1"),
    "duplicated aid": ("adFeature.csv", 3, None, "appears twice"),
}


@pytest.mark.parametrize("case", list(BAD_CSV))
def test_bad_csv_files_leave_nothing_written(tmp_path: Path, tiny_raw: Path, case: str) -> None:
    raw = _copy_raw(tiny_raw, tmp_path / "raw")
    name, line_no, edit, message = BAD_CSV[case]
    lines = (raw / name).read_text().splitlines()
    new = lines[1] if edit is None else edit(lines[line_no - 1])
    _edit_line(raw / name, line_no, new)
    out = tmp_path / "interim"
    with pytest.raises(InputFormatError) as err:
        _load(raw, out)
    assert err.value.path == str(raw / name) and err.value.line == line_no, str(err.value)
    assert message in str(err.value)
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("name", ["adFeature.csv", "train.csv", "test1.csv", "userFeature.data"])
def test_empty_files_are_errors(tmp_path: Path, tiny_raw: Path, name: str) -> None:
    raw = _copy_raw(tiny_raw, tmp_path / "raw")
    (raw / name).write_text("")
    with pytest.raises(InputFormatError, match="empty file") as err:
        _load(raw, tmp_path / "interim")
    assert err.value.path == str(raw / name)


def test_failed_load_keeps_the_previous_output(tmp_path: Path, tiny_raw: Path) -> None:
    raw = _copy_raw(tiny_raw, tmp_path / "raw")
    out = tmp_path / "interim"
    _load(raw, out)
    before = (out / "pairs.npz").read_bytes()
    _edit_line(raw / "userFeature.data", 10, "uid 1|age x")
    with pytest.raises(InputFormatError):
        _load(raw, out)
    assert (out / "pairs.npz").read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == ["ads.csv", "pairs.npz", "users"]


def test_cli_reports_file_and_line_and_exits_non_zero(tmp_path: Path, tiny_raw: Path) -> None:
    raw = _copy_raw(tiny_raw, tmp_path / "raw")
    _edit_line(raw / "userFeature.data", 3, "uid 77|kw1 1 2|kw1 3")
    cmd = [
        sys.executable, "-m", "pipeline.cli", "-q", "load", "--users", str(raw / "userFeature.data"),
        "--ads", str(raw / "adFeature.csv"), "--train", str(raw / "train.csv"),
        "--test", str(raw / "test1.csv"), "--out", str(tmp_path / "interim"),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 1
    assert f"{raw / 'userFeature.data'}:3: field 'kw1' appears twice" in proc.stderr
    assert "Traceback" not in proc.stderr


# ---------------------------------------------------------------------------
# the compiled fast path: it must refuse every malformed chunk it is given
# ---------------------------------------------------------------------------
# a repeated uid is found across chunks, after the scan (tested above)
@pytest.mark.parametrize("case", [c for c in BAD_USER_LINES if c != "duplicated uid"])
def test_fast_scan_flags_every_malformed_chunk(case: str) -> None:
    from pipeline._fastparse import NameTable, scan_chunk
    from pipeline.schema import FIELD_ORDER, SINGLE_VALUED

    lines, _, _ = BAD_USER_LINES[case]
    table = NameTable(list(FIELD_ORDER), set(SINGLE_VALUED | {"uid"}))
    assert scan_chunk(("\n".join(lines) + "\n").encode(), table) is None
    assert table.names == list(FIELD_ORDER)  # a refused scan registers no name


def test_fast_scan_equals_the_vectorised_parser(tiny_raw: Path) -> None:
    from pipeline._fastparse import NameTable, scan_chunk
    from pipeline._parse import parse_chunk
    from pipeline.schema import FIELD_ORDER, SINGLE_VALUED

    data = (tiny_raw / "userFeature.data").read_bytes()
    table = NameTable(list(FIELD_ORDER), set(SINGLE_VALUED | {"uid"}))
    uids, nnz, codes, values = scan_chunk(data, table)
    ref = parse_chunk(data, "f", 1, SINGLE_VALUED | {"uid"})
    names = table.names
    assert np.array_equal(uids, ref.uids) and np.array_equal(nnz, ref.row_nnz)
    assert np.array_equal(values, ref.value)
    assert [names[c] for c in codes[:200]] == [ref.names[c] for c in ref.field[:200]]


def test_huge_ids_and_long_field_names(tmp_path: Path) -> None:
    long_name = "aVeryLongFieldNameFromSomeFutureRound"
    lines = [
        f"uid 1|kw1 2000000000 5|{long_name} 3",
        "uid 2|kw1 5 1999999999",
        f"uid 3|{long_name} 3 4",
    ]
    m = parse_users(write_users(tmp_path / "u.data", lines), chunk_lines=2)
    assert m.block("kw1").values.tolist() == [5, 1999999999, 2000000000]
    assert m.block("kw1").df.tolist() == [2, 1, 1]
    assert m.block(long_name).values.tolist() == [3, 4]
    X = m.csr().toarray()
    kw1 = m.block("kw1")
    assert X[0, kw1.offset : kw1.stop].tolist() == [1, 0, 1]


def test_a_field_name_beyond_64_characters_is_a_clear_error(tmp_path: Path) -> None:
    path = write_users(tmp_path / "u.data", ["uid 1|age 2", "uid 2|" + "x" * 65 + " 1"])
    with pytest.raises(InputFormatError, match="longer than 64 characters") as err:
        parse_users(path)
    assert err.value.line == 2


@pytest.mark.parametrize("chunk", [1, 3, 1000])
def test_keep_uids_parses_only_those_users_and_still_reports_bad_lines(tmp_path, chunk) -> None:  # noqa: ANN001
    from core import InputFormatError
    from pipeline.readers import parse_users

    path = write_users(tmp_path / "u.data", USER_LINES)
    whole = parse_users(path)
    part = parse_users(path, chunk_lines=chunk, keep_uids=np.array([1001, 11, 555]))
    assert sorted(part.uids.tolist()) == [11, 1001]
    for uid in (11, 1001):
        a, b = whole.csr(whole.rows_of(np.array([uid]))), part.csr(part.rows_of(np.array([uid])))
        names_a = [n for f in whole.fields for n in (f"{f.name}={v}" for v in f.values)]
        names_b = [n for f in part.fields for n in (f"{f.name}={v}" for v in f.values)]
        assert sorted(names_a[j] for j in a.indices) == sorted(names_b[j] for j in b.indices)
    # a kept user's bad line, and a line whose uid cannot be read, are reported with their line
    for bad_line in ("uid 12|age x", "uidd 5|age 3"):
        bad = write_users(tmp_path / "bad.data", USER_LINES[:2] + [bad_line] + USER_LINES[2:])
        with pytest.raises(InputFormatError, match=r"bad.data:3"):
            parse_users(bad, chunk_lines=chunk, keep_uids=np.array([11, 12]))


# ---------------------------------------------------------------------------
# reliability: truncated lines, gzip everywhere, one id rule, repeated pairs
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("final_newline", [False, True])
def test_every_truncation_of_a_line_parses_or_is_a_clear_error(tmp_path: Path, gz: bool, final_newline: bool) -> None:
    """The file cut at any byte of its last line: a user, or one error naming that line (never a traceback)."""
    last = "uid 999999|age 1|interest1 93 70|ct 3"
    for cut in range(1, len(last) + 1):
        text = USER_LINES[0] + "\n" + last[:cut] + ("\n" if final_newline else "")
        path = tmp_path / ("u.data.gz" if gz else "u.data")
        path.write_bytes(gzip.compress(text.encode()) if gz else text.encode())
        try:
            parse_users(path, chunk_lines=1 + cut % 2)  # one chunk and two
        except InputFormatError as err:
            assert err.line == 2 and str(path) in str(err), (last[:cut], str(err))


def _gzip(path: Path) -> None:
    """Replace a file by its gzip, under the same name (detected by magic bytes, not by name)."""
    path.write_bytes(gzip.compress(path.read_bytes()))


def test_gzipped_csvs_load_like_plain_ones(tmp_path: Path, tiny_raw: Path) -> None:
    plain, packed = tmp_path / "plain", _copy_raw(tiny_raw, tmp_path / "raw")
    for name in ("userFeature.data", "adFeature.csv", "train.csv", "test1.csv"):
        _gzip(packed / name)
    _load(tiny_raw, plain)
    _load(packed, tmp_path / "packed")
    with np.load(plain / "pairs.npz") as a, np.load(tmp_path / "packed" / "pairs.npz") as b:
        assert a.files == b.files and all(np.array_equal(a[k], b[k]) for k in a.files)
    assert (plain / "ads.csv").read_bytes() == (tmp_path / "packed" / "ads.csv").read_bytes()


def test_a_gzipped_csv_with_a_bad_line_names_it(tmp_path: Path, tiny_raw: Path) -> None:
    raw = _copy_raw(tiny_raw, tmp_path / "raw")
    _edit_line(raw / "train.csv", 4, "1,abc,1")
    _gzip(raw / "train.csv")
    with pytest.raises(InputFormatError, match=r"train.csv:4: uid 'abc' is not an integer"):
        _load(raw, tmp_path / "interim")


ID_CASES = {
    "negative aid": ("train.csv", 3, lambda l: "-5," + l.split(",", 1)[1], "aid -5 is out of range"),
    "aid 2^32": ("test1.csv", 4, lambda l: "4294967296," + l.split(",", 1)[1], "aid 4294967296 is out of range"),
    "uid 2^63": ("train.csv", 5, lambda l: l.split(",")[0] + ",9223372036854775808,1", "uid 9223372036854775808 is out"),
    "advertiser 2^63": ("adFeature.csv", 2, lambda l: l.split(",")[0] + ",9223372036854775808," + l.split(",", 2)[2],
                        "advertiserId 9223372036854775808 is out of range"),
    "negative advertiser": ("adFeature.csv", 3, lambda l: l.split(",")[0] + ",-1," + l.split(",", 2)[2],
                            "advertiserId -1 is out of range"),
    "uid 2^31 in train": ("train.csv", 2, lambda l: l.split(",")[0] + ",2147483648,1", "uid 2147483648 is out of range"),
    "blank line": ("test1.csv", 6, lambda l: "", "blank line"),
}


@pytest.mark.parametrize("case", list(ID_CASES))
def test_one_id_rule_for_every_column_of_every_file(tmp_path: Path, tiny_raw: Path, case: str) -> None:
    """Every id is an integer from 0 to 2^31 - 1, as in the user file; otherwise file and line."""
    raw = _copy_raw(tiny_raw, tmp_path / "raw")
    name, line_no, edit, message = ID_CASES[case]
    lines = (raw / name).read_text().splitlines()
    _edit_line(raw / name, line_no, edit(lines[line_no - 1]))
    with pytest.raises(InputFormatError) as err:
        _load(raw, tmp_path / "interim")
    assert (err.value.path, err.value.line) == (str(raw / name), line_no), str(err.value)
    assert message in str(err.value) and "ids are integers from 0 to 2147483647" in str(err.value) or \
        message == "blank line" and "blank line" in str(err.value)
    # the user file has the same bound
    path = write_users(tmp_path / "u.data", ["uid 1|age 2", "uid 2147483648|age 3"])
    with pytest.raises(InputFormatError, match=r"u.data:2: value 2147483648 is out of range: ids are integers"):
        parse_users(path)


@pytest.mark.parametrize("flip", [False, True])
def test_a_repeated_training_pair_is_an_error_naming_both_lines(tmp_path: Path, tiny_raw: Path, flip: bool) -> None:
    raw = _copy_raw(tiny_raw, tmp_path / "raw")
    lines = (raw / "train.csv").read_text().splitlines()
    aid, uid, label = lines[3].split(",")
    lines.insert(8, f"{aid},{uid},{-int(label) if flip else label}")  # becomes line 9, repeating line 4
    (raw / "train.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(InputFormatError) as err:
        _load(raw, tmp_path / "interim")
    assert err.value.line == 9 and f"pair (aid {aid}, uid {uid}) already on line 4" in str(err.value)
    assert ("with the other label" in str(err.value)) == flip
    assert not (tmp_path / "interim" / "pairs.npz").exists()


def test_repeated_test_pairs_and_test_pairs_in_train_are_scored_and_logged(
    tmp_path: Path, tiny_raw: Path, caplog: pytest.LogCaptureFixture
) -> None:
    raw = _copy_raw(tiny_raw, tmp_path / "raw")
    test = (raw / "test1.csv").read_text().splitlines()
    train = (raw / "train.csv").read_text().splitlines()
    test.insert(5, test[2])  # line 6 repeats line 3
    test.append(",".join(train[7].split(",")[:2]))  # a training pair in the test file
    (raw / "test1.csv").write_text("\n".join(test) + "\n")
    with caplog.at_level(logging.WARNING):
        _load(raw, tmp_path / "interim")
    messages = " | ".join(r.getMessage() for r in caplog.records)
    assert "1 repeated (aid, uid) pairs (first: line 6 repeats line 3); every row is scored" in messages
    assert f"test pairs are also training pairs (first: line {len(test)})" in messages
    from pipeline.files import read_test_pairs

    assert len(read_test_pairs(tmp_path / "interim" / "pairs.npz")) == len(test) - 1  # every row kept
