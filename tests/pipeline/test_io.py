"""Staged outputs: all renamed together on success; on any failure, nothing replaced and nothing left over."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from pipeline.io import CSRChunkWriter, CSRRowReader, stage_outputs


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_outputs_replace_their_targets_together_only_at_the_end(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("old a")
    with stage_outputs() as out:
        out.path(tmp_path / "a.txt").write_text("new a")
        out.path(tmp_path / "sub" / "b.txt").write_text("new b")  # parent folders are made
        assert (tmp_path / "a.txt").read_text() == "old a"  # nothing replaced yet
    assert (tmp_path / "a.txt").read_text() == "new a" and (tmp_path / "sub" / "b.txt").read_text() == "new b"
    assert sorted(p.name for p in tmp_path.rglob(".*")) == []


@pytest.mark.parametrize("error", [ValueError, KeyboardInterrupt, SystemExit])
def test_a_failure_or_an_interrupt_leaves_the_targets_and_no_temporary(tmp_path: Path, error: type) -> None:
    (tmp_path / "x.npz").write_bytes(b"previous")
    before = _files(tmp_path)
    with pytest.raises(error):
        with stage_outputs() as out:
            writer = CSRChunkWriter(out.path(tmp_path / "x.npz"), 4)  # with its scratch files beside it
            writer.append(sp.random(5, 4, density=0.5, format="csr"))
            out.path(tmp_path / "y.txt").write_text("half")
            raise error
    assert _files(tmp_path) == before


def test_a_staged_target_never_written_is_an_error_and_nothing_is_replaced(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("old")
    with pytest.raises(FileNotFoundError, match="never written"):
        with stage_outputs() as out:
            out.path(tmp_path / "a.txt").write_text("new")
            out.path(tmp_path / "b.txt")
    assert (tmp_path / "a.txt").read_text() == "old"


def test_the_chunk_writer_writes_what_the_row_reader_reads(tmp_path: Path) -> None:
    X = sp.random(50, 7, density=0.3, format="csr", random_state=2, dtype=np.float32)
    with stage_outputs() as out:
        writer = CSRChunkWriter(out.path(tmp_path / "x.npz"), 7)
        for start in range(0, 50, 13):
            writer.append(X[start : start + 13])
        assert writer.close() == (50, 7)
    assert (sp.load_npz(tmp_path / "x.npz") != X).nnz == 0
    assert (CSRRowReader(tmp_path / "x.npz").rows(9, 31) != X[9:31]).nnz == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npz"]


def test_a_stale_output_is_removed_at_commit_and_kept_when_the_stage_fails(tmp_path: Path) -> None:
    stale, kept = tmp_path / "pred.npy", tmp_path / "new.npy"
    stale.write_text("earlier run")
    with pytest.raises(RuntimeError), stage_outputs() as outputs:
        outputs.remove(stale)
        raise RuntimeError("stage failed")
    assert stale.read_text() == "earlier run"
    with stage_outputs() as outputs:
        outputs.remove(stale)
        outputs.remove(tmp_path / "never-there.npy")
        outputs.path(kept).write_text("this run")
        assert stale.exists()
    assert not stale.exists() and kept.read_text() == "this run"
