"""A failed or interrupted stage leaves every earlier output byte for byte as it was, and no temporary."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import LOOKALIKE, ROOT


def _snapshot(tmp: Path) -> dict[str, str]:
    """SHA-256 of every derived file (everything but the raw data)."""
    return {
        str(p.relative_to(tmp)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(tmp.rglob("*")) if p.is_file() and "raw" not in p.relative_to(tmp).parts
    }


def _temporaries(tmp: Path) -> list[str]:
    return [str(p.relative_to(tmp)) for p in tmp.rglob(".*") if ".tmp" in p.name]


def _copy_build(built: Path, dst: Path) -> Path:
    """A private copy of the session's build (mtimes kept, so make finds it up to date)."""
    shutil.copytree(built, dst, symlinks=True)
    return dst


def _make_cmd(tmp: Path, config: Path, *targets: str) -> list[str]:
    return ["make", "-C", str(ROOT), *targets, "SCALE=tiny", f"DATA={tmp / 'raw'}", f"BUILD={tmp / 'build'}",
            f"REPORTS={tmp / 'reports'}", f"SUBMISSIONS={tmp / 'sub'}", f"LOOKALIKE={LOOKALIKE}", f"CONFIG={config}"]


def test_a_failing_input_leaves_every_output_as_it_was(built: Path, tmp_path: Path) -> None:
    tmp = _copy_build(built, tmp_path / "b")
    before = _snapshot(tmp)
    lines = (tmp / "raw" / "train.csv").read_text().splitlines()
    lines[5] = lines[5].rsplit(",", 1)[0] + ",0"  # a label that is neither 1 nor -1
    (tmp / "raw" / "train.csv").write_text("\n".join(lines) + "\n")
    res = subprocess.run(_make_cmd(tmp, tmp / "config.toml", "submit"), capture_output=True, text=True)
    assert res.returncode != 0
    assert "train.csv:6: label 0 is not 1 or -1" in res.stderr and "Traceback" not in res.stderr
    assert "Deleting" not in res.stdout + res.stderr
    assert _snapshot(tmp) == before
    assert _temporaries(tmp) == []


@pytest.mark.slow
@pytest.mark.parametrize(
    ("stage", "sig", "trigger", "watch", "rerun"),
    [
        ("features", signal.SIGINT, "build/folds/folds.npy", "build/features", True),
        ("train", signal.SIGINT, "build/features/columns.json", "build/oof", False),
        ("features", signal.SIGTERM, "build/folds/folds.npy", "build/features", False),
    ],
)
def test_an_interrupted_stage_leaves_every_output_as_it_was(
    built: Path, tmp_path: Path, stage: str, sig: signal.Signals, trigger: str, watch: str, rerun: bool
) -> None:
    """Make reruns ``stage`` (its input touched); the signal reaches make and the CLI, as Ctrl-C or kill does
    to a terminal's foreground job, once the stage has started writing its temporaries."""
    tmp = _copy_build(built, tmp_path / "b")
    config = tmp / "slow.toml"  # the same results (features and predictions do not depend on the chunk size) ...
    config.write_text((tmp / "config.toml").read_text().replace("chunk_rows = 97", "chunk_rows = 5"))
    os.utime(config, (0, 0))  # ... and older than every output, so only the touched input makes work
    before = _snapshot(tmp)
    (tmp / trigger).touch()
    proc = subprocess.Popen(_make_cmd(tmp, config, "submit"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while not list((tmp / watch).glob(".*.tmp*")):
        assert proc.poll() is None and time.monotonic() < deadline, "the stage ended before it was interrupted"
        time.sleep(0.005)
    os.killpg(proc.pid, sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert f"lookalike {stage}: {'interrupted' if sig == signal.SIGINT else 'terminated'}" in err, err[-2000:]
    assert "Traceback" not in err and "Deleting" not in out + err
    after = _snapshot(tmp)
    after.pop(trigger)  # touched: same bytes, newer time
    before.pop(trigger)
    assert after == before
    assert _temporaries(tmp) == []
    if rerun:  # the rerun finishes the work and writes the same submission
        res = subprocess.run(_make_cmd(tmp, config, "submit"), capture_output=True, text=True)
        assert res.returncode == 0, res.stderr[-3000:]
        assert (tmp / "sub" / "submission.csv").read_bytes() == (built / "sub" / "submission.csv").read_bytes()
