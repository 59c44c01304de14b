"""Training on a Dask LocalCluster gives the same out-of-fold and test predictions as the local run."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from core import LookalikeError
from pipeline.config import load_config
from pipeline.design import TrainInputs
from pipeline.stages.train import cross_validate, read_inputs
from pipeline.tasks import TrainJob

ROOT = Path(__file__).resolve().parents[2]


def _job(built: Path, **changes: object) -> TrainJob:
    build = built / "build"
    settings = replace(load_config(ROOT / "tests" / "fast.toml").train, **changes)
    return TrainJob(TrainInputs(build / "features", build / "interim" / "pairs.npz", build / "folds" / "folds.npy"),
                    settings)


def test_local_cluster_equals_the_local_run(built: Path) -> None:
    job = _job(built, models=("reference_raw", "easy_dense", "cascade_dense"), n_jobs=1)
    data = read_inputs(job.inputs, None)
    design = job.open_design()
    local = cross_validate(design, job, data)
    remote = cross_validate(design, replace(job, settings=replace(job.settings, scheduler="local:2")), data)
    assert [r.name for r in remote] == [r.name for r in local]
    for a, b in zip(local, remote):
        assert np.array_equal(a.oof, b.oof), a.name
        assert np.array_equal(a.test, b.test), a.name
        assert a.fold_auc == b.fold_auc and a.tasks == b.tasks


@pytest.mark.parametrize("bad", ["local:0", "udp://x", "local:two"])
def test_bad_scheduler_is_a_clear_error(bad: str) -> None:
    with pytest.raises(LookalikeError, match="scheduler"):
        replace(load_config(None).train, scheduler=bad)
