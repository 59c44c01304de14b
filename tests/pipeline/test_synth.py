"""The synthetic data generator: format, shape, determinism, bad arguments."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core import LookalikeError
from pipeline.schema import AD_COLUMNS, FIELDS
from pipeline.synth import TRUTH_FILE, generate, size_for_scale


def reference_parse(path: Path) -> tuple[int, Counter, dict, dict, list]:
    """Ten-line reference parser: presence counts and id ranges per field."""
    present, low, high, lines = Counter(), {}, {}, []
    for n, line in enumerate(open(path), start=1):
        groups = dict(g.split(" ", 1) for g in line.rstrip("\n").split("|"))
        lines.append(groups)
        for name, values in groups.items():
            ids = [int(v) for v in values.split(" ")]
            present[name] += 1
            low[name], high[name] = min(low.get(name, ids[0]), *ids), max(high.get(name, ids[0]), *ids)
    return n, present, low, high, lines


def test_presence_rates_and_ranges_match_the_format(tiny_raw: Path) -> None:
    n, present, low, high, _ = reference_parse(tiny_raw / "userFeature.data")
    assert n == size_for_scale("tiny").users
    for spec in FIELDS:
        rate = present[spec.name] / n
        if spec.presence > 0.10:
            assert abs(rate - spec.presence) <= 0.03, (spec.name, rate)
        if present[spec.name]:
            assert spec.low <= low[spec.name] and high[spec.name] <= spec.high, spec.name


def test_lists_are_sets_in_varying_order_with_short_ids(tiny_raw: Path) -> None:
    *_, lines = reference_parse(tiny_raw / "userFeature.data")
    ct = [g["ct"].split(" ") for g in lines]
    assert all(len(set(v)) == len(v) for v in ct)
    assert any(v != sorted(v, key=int) for v in ct if len(v) > 1)  # not always sorted
    assert sum("0" in v for v in ct) > 0  # 0 = unknown is a real value
    uids = [int(g["uid"]) for g in lines]
    assert len(set(uids)) == len(uids)
    assert max(uids) > 2 * len(uids)  # sparse ids


def test_csv_files_have_the_competition_headers(tiny_raw: Path) -> None:
    size = size_for_scale("tiny")
    ads = pd.read_csv(tiny_raw / "adFeature.csv")
    train = pd.read_csv(tiny_raw / "train.csv")
    test = pd.read_csv(tiny_raw / "test1.csv")
    truth = pd.read_csv(tiny_raw / TRUTH_FILE)
    assert list(ads.columns) == list(AD_COLUMNS) and len(ads) == size.aids
    assert list(train.columns) == ["aid", "uid", "label"] and len(train) == size.train_rows
    assert list(test.columns) == ["aid", "uid"] and len(test) == size.test_rows
    assert set(train["label"]) == {1, -1}
    assert 0.02 < (train["label"] == 1).mean() < 0.08
    assert set(train["aid"]) <= set(ads["aid"]) and set(test["aid"]) <= set(ads["aid"])
    assert truth[["aid", "uid"]].equals(test[["aid", "uid"]])
    assert truth["prob"].between(0, 1).all()
    assert not train.duplicated(["aid", "uid"]).any()
    assert train["uid"].duplicated().any()  # some users are repeated across aids


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    size = size_for_scale("tiny", users=400, train_rows=300, aids=3)
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        generate(tmp_path / name, size, seed=seed)
    for f in ("userFeature.data", "train.csv", "test1.csv", "adFeature.csv"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
    assert (tmp_path / "a" / "train.csv").read_bytes() != (tmp_path / "c" / "train.csv").read_bytes()


def test_labels_follow_the_true_probabilities(tmp_path: Path) -> None:
    size = size_for_scale("tiny", users=6000, train_rows=100, test_rows=5000, aids=2)
    generate(tmp_path, size, seed=1)
    truth = pd.read_csv(tmp_path / TRUTH_FILE)
    y = (truth["label"] == 1).to_numpy()
    assert abs(y.mean() - truth["prob"].mean()) < 0.01
    hi = truth["prob"] > truth["prob"].quantile(0.8)
    assert y[hi].mean() > 2 * y[~hi].mean()


def test_refuses_to_overwrite_existing_files(tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text("aid,uid,label\n")
    with pytest.raises(LookalikeError, match="refusing to overwrite"):
        generate(tmp_path, size_for_scale("tiny"), seed=0)
    assert (tmp_path / "train.csv").read_text() == "aid,uid,label\n"
    assert not (tmp_path / "userFeature.data").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--scale", "huge"], "invalid choice"),
        (["--users", "0"], "must be at least 1"),
        (["--train-rows", "x"], "not an integer"),
        (["--users", "10", "--train-rows", "1000"], "too small"),
    ],
)
def test_bad_arguments_get_one_line_errors(tmp_path: Path, args: list[str], message: str) -> None:
    cmd = [sys.executable, "-m", "pipeline.cli", "synth", "--out", str(tmp_path / "o"), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and message in errors[0]
    assert "Traceback" not in proc.stderr


def test_unwritable_output_is_a_one_line_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    cmd = [sys.executable, "-m", "pipeline.cli", "-q", "synth", "--scale", "tiny", "--out", str(blocker / "sub")]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "cannot create output folder" in proc.stderr


def test_render_lines_matches_python_formatting() -> None:
    from pipeline.synth import render_lines

    rng = np.random.default_rng(0)
    values = rng.integers(0, 10**9, size=500) // (10 ** rng.integers(0, 9, size=500))
    prefix = rng.integers(0, 3, size=500)
    end = rng.random(500) < 0.2
    prefixes = [b" ", b"uid ", b"|kw1 "]
    expected = b"".join(prefixes[p] + str(v).encode() + (b"\n" if e else b"") for p, v, e in zip(prefix, values, end))
    assert render_lines(prefix, values, end, prefixes) == expected
