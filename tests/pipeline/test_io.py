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
    reader = CSRRowReader(tmp_path / "x.npz")
    assert (reader.rows(9, 31) != X[9:31]).nnz == 0
    rows = np.array([40, 3, 3, 17, 49, 0])
    assert (reader.take(rows) != X[rows]).nnz == 0
    pattern = reader.take(rows, data=False)
    assert np.array_equal(pattern.indices, X[rows].indices) and np.all(pattern.data == 1)
    assert np.all(reader.rows(0, 50, data=False).data == 1)
    # a compressed archive (scipy's own save_npz) reads the same
    sp.save_npz(tmp_path / "z.npz", X, compressed=True)
    assert (CSRRowReader(tmp_path / "z.npz").take(rows) != X[rows]).nnz == 0
    (tmp_path / "z.npz").unlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npz"]


def test_npy_take_gathers_rows_of_a_file(tmp_path: Path) -> None:
    from pipeline.io import npy_rows, npy_take

    a = np.arange(60, dtype=np.float32).reshape(20, 3)
    np.save(tmp_path / "a.npy", a)
    assert np.array_equal(npy_take(tmp_path / "a.npy", [19, 0, 4, 4]), a[[19, 0, 4, 4]])
    assert np.array_equal(npy_rows(tmp_path / "a.npy", 2, 7), a[2:7])


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
