"""The submission checker catches every malformed file it is meant to."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import numpy as np

from core import InputFormatError, LookalikeError, Pairs
from pipeline.files import write_predictions
from pipeline.stages.submit import check_submission, write_submission


@pytest.fixture()
def files(tmp_path: Path) -> tuple[Path, Path, pd.DataFrame]:
    test = pd.DataFrame({"aid": [5, 5, 9, 9, 7], "uid": [11, 12, 11, 40, 3]})
    test.to_csv(tmp_path / "test1.csv", index=False)
    sub = test.assign(score=[0.1, 0.9, 0.0, 1.0, 0.5])
    return tmp_path / "test1.csv", tmp_path / "sub.csv", sub


def _write(df: pd.DataFrame, path: Path, header: str | None = None) -> Path:
    text = df.to_csv(index=False)
    if header is not None:
        text = header + "\n" + text.split("\n", 1)[1]
    path.write_text(text)
    return path


def test_a_valid_submission_passes(files) -> None:  # noqa: ANN001
    test, sub, df = files
    assert check_submission(_write(df, sub), test) == []


@pytest.mark.parametrize(
    "edit, expect",
    [
        (lambda d: d.drop(index=2), "4 rows but the test file has 5"),
        (lambda d: d.iloc[[1, 0, 2, 3, 4]], "line 2: pair (5, 12) where the test file has (5, 11)"),
        (lambda d: d.assign(score=[0.1, None, 0.0, 1.0, 0.5]), "missing or NaN score on line(s) 3"),
        (lambda d: d.assign(score=[0.1, 0.9, 1.5, 1.0, 0.5]), "score outside [0, 1] on line(s) 4"),
    ],
)
def test_each_problem_is_caught_with_its_line(files, edit, expect: str) -> None:  # noqa: ANN001
    test, sub, df = files
    problems = check_submission(_write(edit(df), sub), test)
    assert any(expect in p for p in problems), problems


def test_wrong_header(files) -> None:  # noqa: ANN001
    test, sub, df = files
    problems = check_submission(_write(df, sub, header="aid,uid,prob"), test)
    assert problems == ["wrong header 'aid,uid,prob'; expected 'aid,uid,score'"]


def test_cli_exit_codes(files) -> None:  # noqa: ANN001
    test, sub, df = files
    cmd = [sys.executable, "-m", "pipeline.cli", "-q", "check-submission", str(sub), str(test)]
    _write(df, sub)
    assert subprocess.run(cmd, capture_output=True).returncode == 0
    _write(df.assign(score=[0.1, 0.9, 2.0, 1.0, 0.5]), sub)
    bad = subprocess.run(cmd, capture_output=True, text=True)
    assert bad.returncode == 1 and "score outside [0, 1] on line(s) 4" in bad.stderr


def _predictions(path: Path, aid: list[int], uid: list[int], score: list[float]) -> Path:
    n = len(aid)
    pairs = Pairs(np.array(aid), np.array(uid), np.zeros(n, np.int32), np.zeros(n, np.int64))
    write_predictions(path, pairs, np.array(score))
    return path


def test_submit_joins_on_the_pair(files, tmp_path: Path) -> None:  # noqa: ANN001
    test, sub, df = files
    pred = _predictions(tmp_path / "final.npz", df["aid"].tolist(), df["uid"].tolist(), df["score"].tolist())
    write_submission(pred, test, sub)
    assert pd.read_csv(sub).equals(df)


@pytest.mark.parametrize(
    ("order", "message", "error"),
    [
        ([1, 0, 2, 3, 4], r"test1.csv:2: pair \(5, 11\) but the predictions .* have \(5, 12\)", InputFormatError),
        ([0, 1, 2, 3], "has 4 scores but .*test1.csv has 5 rows", LookalikeError),
        ([0, 1, 2, 4, 3], r"test1.csv:5: pair \(9, 40\)", InputFormatError),
    ],
)
def test_submit_refuses_predictions_of_other_pairs(files, tmp_path: Path, order: list[int], message: str,
                                                   error: type) -> None:  # noqa: ANN001
    test, sub, df = files
    d = df.iloc[order]
    pred = _predictions(tmp_path / "final.npz", d["aid"].tolist(), d["uid"].tolist(), d["score"].tolist())
    with pytest.raises(error, match=message):
        write_submission(pred, test, sub)
    assert not sub.exists()


@pytest.mark.parametrize(
    ("text", "expect"),
    [
        ("aid,uid,score\naid,uid,score\n5,11,0.1\n", "line 2: aid 'aid' is not an integer"),
        ("aid,uid,score\n5,11,0.1\n5,12,0.9\naid,uid,score\n", "line 4: aid 'aid' is not an integer"),
        ("aid,uid,score\n5,11,0.1\n5,12,abc\n", "line 3: score 'abc' is not a number"),
        ("aid,uid,score\n5,11,0.1\n5,12,0.9,7\n", "line 3: expected 3 values, got 4"),
    ],
)
def test_malformed_lines_are_named(files, text: str, expect: str) -> None:  # noqa: ANN001
    test, sub, _ = files
    sub.write_text(text)
    assert check_submission(sub, test) == [expect]


def test_a_gzipped_submission_is_read_by_its_magic_bytes(files) -> None:  # noqa: ANN001
    import gzip

    test, sub, df = files
    _write(df, sub)
    sub.write_bytes(gzip.compress(sub.read_bytes()))
    assert check_submission(sub, test) == []


def test_score_lines_write_what_pandas_writes_with_eight_decimals() -> None:
    import io

    import pandas as pd

    from pipeline._scorecsv import score_lines

    rng = np.random.default_rng(0)
    ties = (np.arange(2000) + 0.5) / 1e8  # the rounding ties of the eighth decimal, and their neighbours
    score = np.r_[rng.random(20_000), [0.0, 1.0, 0.5, 1e-9, 5e-9, 0.999999995], ties, np.nextafter(ties, 0),
                  np.nextafter(ties, 1)]
    aid, uid = rng.integers(0, 3000, len(score)), rng.integers(0, 2**31 - 1, len(score))
    want = io.StringIO()
    pd.DataFrame({"aid": aid, "uid": uid, "score": score}).to_csv(want, index=False, header=False,
                                                                  float_format="%.8f")
    assert score_lines(aid, uid, score) == want.getvalue().encode()
    assert score_lines(aid[:0], uid[:0], score[:0]) == b""
    with pytest.raises(ValueError, match="scores in"):
        score_lines(aid[:1], uid[:1], np.array([np.nan]))
