"""End to end: `make features train submit` on tiny data, a no-op second run, the same bytes twice."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import ROOT, make


def test_make_ran_every_stage_and_is_then_up_to_date(built: Path) -> None:
    sub = pd.read_csv(built / "sub" / "submission.csv")
    test = pd.read_csv(built / "raw" / "test1.csv")
    assert list(sub.columns) == ["aid", "uid", "score"]
    assert sub[["aid", "uid"]].equals(test)
    assert sub["score"].between(0, 1).all() and sub["score"].notna().all()
    report = (built / "reports" / "cv.md").read_text()
    assert "mean per-aid AUC" in report and "Oracle" in report
    assert (built / "reports" / "per_aid_auc.png").stat().st_size > 1000

    again = make(built, "features", "train", "submit", config=built / "config.toml")
    assert again.returncode == 0
    assert "lookalike" not in again.stdout  # no recipe ran
    assert again.stdout.count("Nothing to be done") == 3


@pytest.mark.slow
def test_same_seed_gives_a_byte_identical_submission(built: Path, tmp_path: Path) -> None:
    """A second build from scratch (same raw data and config) writes the same bytes."""
    res = make(tmp_path, "submit", config=built / "config.toml", data=built / "raw")
    assert res.returncode == 0, res.stderr[-3000:]
    assert (tmp_path / "sub" / "submission.csv").read_bytes() == (built / "sub" / "submission.csv").read_bytes()


def test_help_lists_the_targets() -> None:
    out = subprocess.run(["make", "-C", str(ROOT), "help"], capture_output=True, text=True).stdout
    for target in ("features", "train", "submit", "test", "bench"):
        assert target in out


def test_cli_help_lists_every_stage() -> None:
    out = subprocess.run([sys.executable, "-m", "pipeline.cli", "--help"], capture_output=True, text=True).stdout
    for stage in ("synth", "load", "folds", "features", "train", "submit", "score"):
        assert stage in out
    assert np.all([s in out for s in ("--verbose", "--quiet")])
