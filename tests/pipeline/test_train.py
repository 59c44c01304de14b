"""The train stage's design and fold loop: no label reaches a row it should not, inputs checked first."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from core import LookalikeError
from features import FeatureSet
from pipeline.config import load_config
from pipeline.design import Fold, FoldDesign, Part, Refit, TrainInputs, column_group
from ensemble import per_aid_auc
from pipeline.files import read_test_pairs, read_train_pairs
from pipeline.stages.features import run_features
from pipeline.stages.folds import run_folds
from pipeline.stages.load import run_load
from pipeline.stages.train import (
    cross_validate, feature_importance, permutation_importance, read_inputs, run_train,
)
from pipeline.synth import generate, size_for_scale
from pipeline.models import ModelColumns, build_model, parse_model
from pipeline.tasks import TrainJob, fit_model, run_task
from tests.features.test_ctr import _reference

ROOT = Path(__file__).resolve().parents[2]


def _inputs(build: Path) -> TrainInputs:
    return TrainInputs(build / "features", build / "interim" / "pairs.npz", build / "folds" / "folds.npy")


@pytest.fixture(scope="module")
def design(built: Path) -> FoldDesign:
    return FoldDesign(_inputs(built / "build"), {FeatureSet.DENSE, FeatureSet.FULL}, chunk_rows=70)


def test_ctr_columns_leave_out_the_scored_fold_and_the_rows_own_fold(design: FoldDesign, built: Path) -> None:
    """A training row of fold j in the model of fold k: statistics of the rows outside j and k; a held-out
    row of fold k: outside k; the refit's test rows: of all rows."""
    build = built / "build"
    tokens = sp.load_npz(build / "features" / "sparse_train.npz").tocsr()
    aid_idx, folds, y = read_train_pairs(build / "interim" / "pairs.npz").aid_idx, design.folds, design.y
    spec, n_dense = design.encoder.spec, design.layout.n_dense
    for k in range(design.n_folds):
        fit_ctr = design.matrix(FeatureSet.DENSE, Fold(k))[:, n_dense:]
        held_ctr = np.vstack([X[:, n_dense:] for X in design.chunks(FeatureSet.DENSE, Fold(k), Part.HELD)])
        fit_rows = np.flatnonzero(folds != k)
        for j in set(range(design.n_folds)) - {k}:
            src, rows = np.flatnonzero((folds != j) & (folds != k)), np.flatnonzero(folds == j)
            _, want = _reference(spec, tokens[src], aid_idx[src], y[src], folds[src], tokens[rows], aid_idx[rows])
            np.testing.assert_allclose(fit_ctr[np.isin(fit_rows, rows)], want, rtol=1e-6, atol=1e-9, equal_nan=True)
        src, rows = np.flatnonzero(folds != k), np.flatnonzero(folds == k)
        _, want = _reference(spec, tokens[src], aid_idx[src], y[src], folds[src], tokens[rows], aid_idx[rows])
        np.testing.assert_allclose(held_ctr, want, rtol=1e-6, atol=1e-9, equal_nan=True)
    # the full set holds the same statistics after the dense and sparse columns
    full = design.matrix(FeatureSet.FULL, Fold(0))
    dense = design.matrix(FeatureSet.DENSE, Fold(0))
    assert np.array_equal(full[:, -design.layout.n_ctr:].toarray(), dense[:, n_dense:], equal_nan=True)
    assert design.labels(Refit()).shape == design.y.shape


@pytest.mark.parametrize("feature_set", [FeatureSet.DENSE, FeatureSet.FULL])
def test_the_design_of_some_fit_rows_is_those_rows_of_the_whole_design(design: FoldDesign,
                                                                       feature_set: FeatureSet) -> None:
    task = Fold(1)
    whole = design.matrix(feature_set, task)
    whole = whole.toarray() if sp.issparse(whole) else whole.copy()
    rows = np.sort(np.random.default_rng(0).choice(len(whole), len(whole) // 3, replace=False))
    part = design.matrix(feature_set, task, rows)
    part = part.toarray() if sp.issparse(part) else part
    assert np.array_equal(part, whole[rows], equal_nan=True)
    held = list(design.chunks(feature_set, task, Part.HELD))
    held = sp.vstack(held).toarray() if sp.issparse(held[0]) else np.vstack(held)
    for some in (np.arange(0, len(held), 3), np.arange(5, len(held), 40)):  # ranges read, and rows read alone
        part = list(design.chunks(feature_set, task, Part.HELD, rows=some))
        part = sp.vstack(part).toarray() if sp.issparse(part[0]) else np.vstack(part)
        assert np.array_equal(part, held[some], equal_nan=True)
    with pytest.raises(ValueError, match="fit or held-out rows only"):
        next(design.chunks(feature_set, task, Part.TEST, rows=rows))


@pytest.mark.parametrize("model", ["easy_dense", "reference_dense", "cascade_dense"])
def test_fit_model_builds_only_the_rows_the_bags_read_and_trains_the_same_bags(design: FoldDesign,
                                                                              model: str) -> None:
    settings = replace(load_config(ROOT / "tests" / "fast.toml").train, n_bags=2, n_estimators=8)
    spec, task = parse_model(model), Fold(2)
    est = fit_model(design, settings, spec, task)
    built = design._fit_cache[1]  # noqa: SLF001 (the matrix fit_model had the design build)
    plan = est.plan(design.labels(task))
    # EasyEnsemble's bags read a part of the rows; the reference model's all; the cascade's depend on its stages
    assert plan is None if model.startswith("cascade") else plan is not None
    assert built.shape[0] == (len(plan.rows) if plan is not None else len(design.labels(task)))
    assert (built.shape[0] < len(design.labels(task))) is model.startswith("easy")
    categorical = design.layout.categorical(spec.feature_set, settings.categorical_crosses)
    direct = build_model(spec, settings, ModelColumns(categorical)).fit(design.matrix(spec.feature_set, task),
                                                          design.labels(task))
    assert [b.model_to_string() for b in est.estimators_] == [b.model_to_string() for b in direct.estimators_]


def _shuffled_build(tmp: Path) -> tuple[TrainInputs, TrainJob]:
    """Synthetic data whose training labels are a random permutation, through load, folds and features."""
    raw = tmp / "raw"
    generate(raw, size_for_scale("tiny", users=24_000, train_rows=24_000, aids=20, test_rows=500), seed=5)
    train = pd.read_csv(raw / "train.csv")
    train["label"] = np.random.default_rng(0).permutation(train["label"].to_numpy())
    train.to_csv(raw / "train.csv", index=False)
    build = tmp / "build"
    settings = load_config(ROOT / "tests" / "fast.toml")
    run_load(raw / "userFeature.data", raw / "adFeature.csv", raw / "train.csv", raw / "test1.csv",
             build / "interim")
    run_folds(build / "interim" / "pairs.npz", build / "folds" / "folds.npy", settings.folds)
    # little smoothing and rare tokens kept: the statistics a leak would carry are as sharp as they get
    run_features(build / "interim", build / "folds" / "folds.npy", build / "features", tmp / "features.md",
                 replace(settings.features, ctr_smoothing=1.0, min_df=2))
    train_settings = replace(settings.train, models=("easy_dense", "reference_full"), n_estimators=60)
    return _inputs(build), TrainJob(_inputs(build), train_settings)


@pytest.mark.slow
def test_shuffled_labels_give_chance_out_of_fold(tmp_path: Path) -> None:
    """Through the stage's own fold loop: with labels that carry no signal, every model's out-of-fold mean
    per-aid AUC is 0.5 within noise (20 aids of about 58 positives; this seed: easy_dense 0.493,
    reference_full 0.484). The same data with the scored fold's labels let into the training rows'
    statistics (the non-nested scheme) gave easy_dense 0.538: this bound catches it."""
    inputs, job = _shuffled_build(tmp_path)
    data = read_inputs(inputs, None)
    results = cross_validate(job.open_design(), job, data)
    for r in results:
        assert abs(data.score(r.oof) - 0.5) < 0.03, (r.name, data.score(r.oof))


def test_a_truth_file_that_does_not_match_is_refused_before_training(built: Path, tmp_path: Path) -> None:
    truth = pd.read_csv(built / "raw" / "test1.truth.csv")
    truth.iloc[[0, 1]] = truth.iloc[[1, 0]].to_numpy()
    truth.to_csv(tmp_path / "truth.csv", index=False)
    build = built / "build"
    with pytest.raises(LookalikeError, match=r"truth.csv does not describe the rows of the test file, in order: "
                                             r"line 2 has"):
        run_train(build / "features", build / "interim", build / "folds" / "folds.npy", tmp_path / "out",
                  tmp_path / "cv.md", load_config(ROOT / "tests" / "fast.toml").train, truth=tmp_path / "truth.csv")
    assert not (tmp_path / "out").exists()  # nothing trained, nothing written


@pytest.mark.parametrize("refit", [True, False])
def test_fold_models_predict_the_test_rows_only_when_their_average_is_submitted(design: FoldDesign,
                                                                                 refit: bool) -> None:
    settings = replace(load_config(ROOT / "tests" / "fast.toml").train, refit=refit, n_bags=1, n_estimators=5)
    fold, full = run_task(design, settings, "easy_dense", Fold(0)), run_task(design, settings, "easy_dense", Refit())
    assert len(fold.oof) == int((design.folds == 0).sum())
    assert (fold.test is None) is refit
    assert full.test is not None and len(full.test) == len(full.test[np.isfinite(full.test)]) > 0


def test_the_report_scores_the_refitted_models_on_the_test_rows(built: Path) -> None:
    """With the refit, the fold models leave no test average; the report's test AUC of each model is its
    refit's (every model is refitted for the stack), computed here again from the saved files."""
    build, cv = built / "build", json.loads((built / "reports" / "cv.json").read_text())
    truth = pd.read_csv(built / "raw" / "test1.truth.csv")
    test = read_test_pairs(build / "interim" / "pairs.npz")
    assert list(zip(truth["aid"], truth["uid"])) == list(zip(test.aid, test.uid))
    for row in cv["models"]:
        name = row["model"]
        assert not (build / "pred" / f"{name}.npy").exists()
        if name in {"blend_rank", "blend_score", "stack"}:
            assert (row["test_mean_aid_auc"] is None) is (name != cv["final"])
            continue
        refit = np.load(build / "pred" / f"{name}.refit.npy")
        assert row["test_mean_aid_auc"] == pytest.approx(per_aid_auc((truth["label"] == 1).to_numpy(), refit, test.aid).mean)
    assert cv["models"][[r["model"] for r in cv["models"]].index(cv["final"])]["test_mean_aid_auc"] == \
        pytest.approx(cv["submitted_test_mean_aid_auc"])


@pytest.mark.parametrize(("name", "group"), [
    ("aid_idx", "aid"), ("ad:advertiserId_33", "ad"), ("interest1=12", "interest1"), ("len_kw2", "kw2"),
    ("age", "age"), ("aid_x_LBS", "aid x LBS"), ("count_aid_x_LBS", "aid x LBS"), ("aid17_x_house=1", "aid x house"),
    ("ctr_aid_kw1_lor", "CTR kw1"), ("ctr_productType_topic2_mean", "CTR topic2"), ("hist_all_pos", "history"),
    ("count_uid", "counts"),
])
def test_column_groups_follow_the_features_stage_names(name: str, group: str) -> None:
    assert column_group(name) == group


def test_the_report_has_the_gain_importance_of_every_model(built: Path) -> None:
    cv = json.loads((built / "reports" / "cv.json").read_text())
    models = [r["model"] for r in cv["models"] if r["model"] not in {"blend_rank", "blend_score", "stack"}]
    assert sorted(cv["importance"]) == sorted(models)
    for name, shares in cv["importance"].items():
        assert sum(shares.values()) == pytest.approx(1.0) and all(v > 0 for v in shares.values()), name
    assert any(g.startswith("CTR ") for g in cv["importance"]["easy_dense"])
    assert not any(g.startswith("CTR ") for g in cv["importance"]["reference_raw"])
    text = (built / "reports" / "cv.md").read_text()
    assert "## Feature importance" in text and (built / "reports" / "importance.png").stat().st_size > 1000
    # the stack is submitted: the permutation importance is that of the best model out of fold
    best = max((r for r in cv["models"] if r["model"] in models), key=lambda r: r["oof_mean_aid_auc"])
    assert cv["permutation"]["model"] == best["model"] and cv["permutation"]["drop"]
    assert "## Permutation importance" in text and (built / "reports" / "permutation.png").stat().st_size > 1000


def test_permutation_importance_is_zero_for_unused_groups_and_the_oof_score_unpermuted(built: Path) -> None:
    build = built / "build"
    settings = replace(load_config(ROOT / "tests" / "fast.toml").train, models=("easy_dense",),
                       permutation_rows=10**9)  # every row: the unpermuted score is the out-of-fold one
    job = TrainJob(_inputs(build), settings)
    data = read_inputs(job.inputs, None)
    design = job.open_design()
    results = cross_validate(design, job, data)
    perm = permutation_importance(design, results, results[0], data, job.inputs.columns, settings)
    assert perm.model == "easy_dense" and perm.rows == len(data.y)
    assert perm.auc == pytest.approx(data.score(results[0].oof), abs=1e-12)
    gain = feature_importance(results, job.inputs.columns)["easy_dense"]
    unused = set(perm.drop) - set(gain)
    assert unused and all(perm.drop[g] == 0.0 for g in unused)  # trees that never split on it
    assert max(perm.drop.values()) > 0.0 and list(perm.drop.values()) == sorted(perm.drop.values(), reverse=True)
    assert permutation_importance(design, results, results[0], data, job.inputs.columns,
                                  replace(settings, permutation_rows=0)) is None
