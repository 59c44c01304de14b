"""End to end: `make features train submit` on tiny data, then a no-op second run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _make(tmp: Path, *targets: str) -> subprocess.CompletedProcess:
    lookalike = Path(sys.executable).parent / "lookalike"
    cmd = [
        "make", "-C", str(ROOT), *targets, "SCALE=tiny", f"DATA={tmp / 'raw'}", f"BUILD={tmp / 'build'}",
        f"REPORTS={tmp / 'reports'}", f"SUBMISSIONS={tmp / 'sub'}", f"LOOKALIKE={lookalike}",
        f"CONFIG={ROOT / 'tests' / 'fast.toml'}",
    ]
    return subprocess.run(cmd, capture_output=True, text=True)


@pytest.mark.slow
def test_make_runs_every_stage_then_is_up_to_date(tmp_path: Path) -> None:
    first = _make(tmp_path, "features", "train", "submit")
    assert first.returncode == 0, first.stderr[-3000:]
    sub = pd.read_csv(tmp_path / "sub" / "submission.csv")
    test = pd.read_csv(tmp_path / "raw" / "test1.csv")
    assert list(sub.columns) == ["aid", "uid", "score"]
    assert sub[["aid", "uid"]].equals(test)
    assert sub["score"].between(0, 1).all() and sub["score"].notna().all()
    report = (tmp_path / "reports" / "cv.md").read_text()
    assert "mean per-aid AUC" in report and "Oracle" in report
    assert (tmp_path / "reports" / "per_aid_auc.png").stat().st_size > 1000

    second = _make(tmp_path, "features", "train", "submit")
    assert second.returncode == 0
    assert "lookalike" not in second.stdout  # no recipe ran
    assert second.stdout.count("Nothing to be done") == 3


@pytest.mark.slow
def test_same_seed_gives_a_byte_identical_submission(tmp_path: Path) -> None:
    assert _make(tmp_path, "submit").returncode == 0
    first = (tmp_path / "sub" / "submission.csv").read_bytes()
    assert _make(tmp_path, "clean").returncode == 0
    assert not (tmp_path / "sub" / "submission.csv").exists()
    assert _make(tmp_path, "submit").returncode == 0
    assert (tmp_path / "sub" / "submission.csv").read_bytes() == first


def test_help_lists_the_targets() -> None:
    out = subprocess.run(["make", "-C", str(ROOT), "help"], capture_output=True, text=True).stdout
    for target in ("features", "train", "submit", "test", "bench"):
        assert target in out


def test_cli_help_lists_every_stage() -> None:
    out = subprocess.run([sys.executable, "-m", "pipeline.cli", "--help"], capture_output=True, text=True).stdout
    for stage in ("synth", "load", "folds", "features", "train", "submit"):
        assert stage in out
    assert np.all([s in out for s in ("--verbose", "--quiet")])


def test_every_shipped_config_loads_and_names_known_models() -> None:
    from ensemble.cv import _parse_name
    from pipeline.config import load_config

    paths = sorted((ROOT / "config").glob("*.toml")) + sorted((ROOT / "bench").glob("*.toml"))
    assert len(paths) >= 5
    for path in paths:
        settings = load_config(path)["train"]
        assert settings["models"], path
        for name in settings["models"]:
            _parse_name(name)  # raises on an unknown kind, set or granularity
