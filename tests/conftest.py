"""Shared fixtures: tiny data in the real file format, written to tmp_path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.synth import generate, size_for_scale


@pytest.fixture(scope="session")
def tiny_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthetic competition file set (read-only for tests)."""
    out = tmp_path_factory.mktemp("raw")
    generate(out, size_for_scale("tiny"), seed=0)
    return out


def write_users(path: Path, lines: list[str], newline: str = "\n", final: bool = True) -> Path:
    """Write ``userFeature.data`` lines (optionally CRLF, optionally no final newline)."""
    text = newline.join(lines) + (newline if final else "")
    path.write_bytes(text.encode())
    return path


USER_LINES = [
    "uid 11|age 4|gender 2|marriageStatus 11|LBS 950|interest1 93 70 77|kw1 664359 276966|ct 3 1|os 2|carrier 1",
    "uid 7|age 0|gender 1|marriageStatus 0 2|LBS 3|interest3 7|kw1 276966|ct 1 3|os 1|carrier 0|house 1",
    "uid 1001|age 4|gender 1|marriageStatus 11|interest1 70|topic1 9826 105|ct 0|os 2|carrier 3",
    "uid 42|gender 0|marriageStatus 2|LBS 950|interest1 5 93|kw2 11395|ct 1|os 0 2|carrier 1|house 1",
]

ROOT = Path(__file__).resolve().parents[1]
LOOKALIKE = Path(sys.executable).parent / "lookalike"


def make(tmp: Path, *targets: str, config: Path | None = None, data: Path | None = None) -> subprocess.CompletedProcess:
    """``make TARGETS`` on tiny synthetic data, every path under ``tmp`` (raw data under ``data`` if given)."""
    cmd = [
        "make", "-C", str(ROOT), *targets, "SCALE=tiny", f"DATA={data or tmp / 'raw'}", f"BUILD={tmp / 'build'}",
        f"REPORTS={tmp / 'reports'}", f"SUBMISSIONS={tmp / 'sub'}", f"LOOKALIKE={LOOKALIKE}",
        f"CONFIG={config or ROOT / 'tests' / 'fast.toml'}",
    ]
    return subprocess.run(cmd, capture_output=True, text=True)


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One end-to-end ``make submit`` on tiny data, shared by every test that needs a finished build.

    Every model kind and feature set, global, per aid and hybrid, with the
    stack submitted (so every model feeds the scorer), refitted on all rows,
    and small chunks so every chunked path runs more than once. Read-only for
    the tests; the config is ``tmp/config.toml``.
    """
    tmp = tmp_path_factory.mktemp("built")
    config = tmp / "config.toml"
    text = (ROOT / "tests" / "fast.toml").read_text().replace("[features]\n", "[features]\nchunk_rows = 97\n")
    text = text.replace('"easy_sparse"]', '"easy_sparse", "reference_raw_peraid", "easy_dense_hybrid"]')
    config.write_text(text.replace("[train]\n", '[train]\nfinal = "stack"\nmin_positives = 8\nchunk_rows = 150\n'))
    res = make(tmp, "submit", config=config)
    assert res.returncode == 0, res.stderr[-3000:]
    return tmp
