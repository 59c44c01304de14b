"""Training on a Dask LocalCluster gives the same out-of-fold predictions as the local run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import load_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def features(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("dask")
    res = subprocess.run(
        ["make", "-C", str(ROOT), "features", "SCALE=tiny", f"DATA={tmp / 'raw'}", f"BUILD={tmp / 'build'}",
         f"REPORTS={tmp / 'reports'}", f"LOOKALIKE={Path(sys.executable).parent / 'lookalike'}",
         f"CONFIG={ROOT / 'tests' / 'fast.toml'}"],
        capture_output=True, text=True,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return tmp / "build"


def test_local_cluster_equals_the_local_run(features: Path) -> None:
    from ensemble.cv import TrainJob, train_models

    settings = load_config(ROOT / "tests" / "fast.toml")["train"]
    settings.update(models=["reference_raw", "easy_dense", "cascade_dense"], n_jobs=1)
    job = TrainJob(str(features / "features"), str(features / "interim"), str(features / "folds/folds.npy"), settings)
    local, local_ctr = train_models(job)
    remote, remote_ctr = train_models(job, scheduler="local:2")
    assert [r.name for r in remote] == [r.name for r in local]
    for a, b in zip(local, remote):
        assert np.array_equal(a.oof, b.oof), a.name
        assert np.array_equal(a.test, b.test), a.name
        assert a.fold_auc == b.fold_auc
    assert len(remote_ctr) == len(local_ctr) == 4  # three folds, then all rows
    for a, b in zip(local_ctr, remote_ctr):
        assert a.exclude_ == b.exclude_
        assert np.array_equal(a.stats_.counts_, b.stats_.counts_)


def test_bad_scheduler_is_a_clear_error(features: Path) -> None:
    from ensemble.cv import TrainJob, train_models
    from pipeline.errors import LookalikeError

    settings = load_config(ROOT / "tests" / "fast.toml")["train"]
    job = TrainJob(str(features / "features"), str(features / "interim"), str(features / "folds/folds.npy"), settings)
    for bad in ("local:0", "udp://x", "local:two"):
        with pytest.raises(LookalikeError, match="scheduler"):
            train_models(job, scheduler=bad)
