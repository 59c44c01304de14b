"""The tune stage on the shared tiny build: a study that resumes, the best config, bad spaces."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from core import LookalikeError
from pipeline.config import load_config
from pipeline.stages.tune import run_tune, trial_settings
from tests.conftest import LOOKALIKE

ROOT = Path(__file__).resolve().parents[2]

TUNE = """
[tune]
model = "easy_dense"
n_trials = {n}
folds = 2
startup_trials = 2
[tune.space]
num_leaves = [4, 31]
learning_rate = [0.05, 0.3, "log"]
"""


def _config(tmp: Path, n_trials: int) -> Path:
    path = tmp / f"tune{n_trials}.toml"
    path.write_text((ROOT / "tests" / "fast.toml").read_text() + TUNE.format(n=n_trials))
    return path


def _run(built: Path, tmp: Path, n_trials: int) -> None:
    build, config = built / "build", _config(tmp, n_trials)
    run_tune(build / "features", build / "interim", build / "folds" / "folds.npy", tmp / "tune.db",
             tmp / "best.toml", tmp / "tune.md", load_config(config), config.read_text())


def _finished(db: Path) -> list[optuna.trial.FrozenTrial]:
    name = optuna.get_all_study_names(f"sqlite:///{db}")[0]
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{db}")
    return [t for t in study.get_trials() if t.state.is_finished() and t.state.name != "FAIL"]


def test_a_study_resumes_and_writes_a_config_that_trains(built: Path, tmp_path: Path) -> None:
    _run(built, tmp_path, 3)
    first = _finished(tmp_path / "tune.db")
    assert len(first) == 3
    _run(built, tmp_path, 5)  # the same study, two trials more
    after = _finished(tmp_path / "tune.db")
    assert len(after) == 5
    assert [(t.number, t.params, t.value) for t in after[:3]] == [(t.number, t.params, t.value) for t in first]
    best = load_config(tmp_path / "best.toml")  # a config the train stage accepts
    complete = [t for t in after if t.state.name == "COMPLETE"]
    top = max(complete, key=lambda t: t.value)
    assert best.train.models == ("easy_dense",)
    assert best.train.lgbm["num_leaves"] == top.params["num_leaves"]
    assert best.train.lgbm["learning_rate"] == pytest.approx(top.params["learning_rate"])
    assert best.train.n_estimators == 25  # the rest of the base config kept
    report = (tmp_path / "tune.md").read_text()
    assert f"**{top.value:.4f}**" in report and (tmp_path / "tune_history.png").stat().st_size > 1000
    # the objective is the out-of-fold score of the train stage's own tasks: recompute the best trial
    settings = trial_settings(load_config(_config(tmp_path, 5)), top.params)
    assert settings.train.lgbm["num_leaves"] == top.params["num_leaves"] and settings.train.models == ("easy_dense",)


def _schema_written(db: Path) -> bool:
    """Whether the tune process has finished creating the study's tables, read without writing:
    opening the storage with optuna before then would create them a second time, racing it."""
    if not db.exists():
        return False
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
            return bool(con.execute("SELECT count(*) FROM alembic_version").fetchone()[0])
    except sqlite3.Error:  # not created yet, or locked by the writer
        return False


def test_a_study_killed_mid_trial_keeps_its_finished_trials(built: Path, tmp_path: Path) -> None:
    build, config = built / "build", _config(tmp_path, 50)
    db = tmp_path / "tune.db"
    cmd = [str(LOOKALIKE), "-q", "tune", "--features", str(build / "features"), "--interim",
           str(build / "interim"), "--folds", str(build / "folds" / "folds.npy"), "--study", str(db),
           "--out", str(tmp_path / "best.toml"), "--report", str(tmp_path / "tune.md"), "--config", str(config)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + 240
    try:
        while time.time() < deadline:
            time.sleep(0.5)
            if _schema_written(db) and optuna.get_all_study_names(f"sqlite:///{db}"):
                name = optuna.get_all_study_names(f"sqlite:///{db}")[0]
                trials = optuna.load_study(study_name=name, storage=f"sqlite:///{db}").get_trials()
                if len([t for t in trials if t.state.is_finished()]) >= 2 and trials[-1].state.name == "RUNNING":
                    break
        else:
            pytest.fail("the study never reached a third trial")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    before = _finished(db)
    assert len(before) >= 2 and not (tmp_path / "best.toml").exists()
    _run(built, tmp_path, len(before) + 1)
    after = _finished(db)
    assert [(t.number, t.params, t.value) for t in after[: len(before)]] == \
        [(t.number, t.params, t.value) for t in before]
    assert len(after) == len(before) + 1 and (tmp_path / "best.toml").exists()


@pytest.mark.parametrize(("space", "message"), [
    ("nonsense = [1, 2]", r"\[tune\] space.nonsense: is neither a LightGBM parameter"),
    ("num_threads = [1, 2]", r"space.num_threads: is set by the pipeline itself"),
    ("num_leaves = [31, 4]", r"space.num_leaves: needs low < high"),
    ("learning_rate = [0.0, 0.3, \"log\"]", r"a log range needs low > 0"),
    ("num_leaves = [4, 31, \"cubic\"]", r"kind 'cubic' is none of"),
    ("", r"\[tune\] space: is empty"),
])
def test_bad_search_spaces_are_one_line_errors(tmp_path: Path, space: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(f"[tune]\nn_trials = 2\n[tune.space]\n{space}\n")
    with pytest.raises(LookalikeError, match=message):
        load_config(path)
    res = subprocess.run([str(LOOKALIKE), "tune", "--features", "f", "--interim", "i", "--folds", "x",
                          "--study", "s", "--out", "o", "--report", "r", "--config", str(path)],
                         capture_output=True, text=True)
    assert res.returncode != 0 and "Traceback" not in res.stderr and str(path) in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr


def test_tune_without_optuna_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "optuna", None)
    from pipeline.stages.tune import _optuna

    with pytest.raises(LookalikeError, match=r"pip install 'lookalike\[tune\]'"):
        _optuna()
