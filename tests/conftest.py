"""Shared fixtures: tiny data in the real file format, written to tmp_path."""

from __future__ import annotations

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
