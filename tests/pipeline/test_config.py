"""Typed settings: defaults in one place, every mistake one message naming the file and the key."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from core import LookalikeError
from features import FeatureSet
from pipeline.config import Settings, TrainSettings, config_hash, load_config
from pipeline.models import ModelColumns, build_model, parse_model

ROOT = Path(__file__).resolve().parents[2]


def test_default_toml_restates_the_defaults() -> None:
    assert load_config(ROOT / "config" / "default.toml") == Settings() == load_config(None)


def test_every_shipped_config_loads_and_names_known_models() -> None:
    paths = sorted((ROOT / "config").glob("*.toml")) + sorted((ROOT / "bench").glob("*.toml"))
    paths.append(ROOT / "tests" / "fast.toml")
    assert len(paths) >= 6
    for path in paths:
        for name in load_config(path).train.models:
            assert parse_model(name).name == name


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[trian]\n", "unknown section [trian]"),
        ("[train]\nnbags = 3\n", "unknown setting [train] nbags"),
        ("[train]\nlearning_rate = 0.1\n", "unknown setting [train] learning_rate (now [train.lgbm] learning_rate)"),
        ("[train]\nn_bags = 0\n", "[train] n_bags: must be at least 1, got 0"),
        ("[train]\nn_bags = 2.5\n", "[train] n_bags must be int, got 2.5"),
        ("[train]\nmodels = []\n", "[train] models: is empty"),
        ("[train]\nmodels = ['easy_dense', 'easy_dense']\n", "[train] models: names a model twice"),
        ("[train]\nmodels = ['easy_dens']\n", "[train] models: unknown model 'easy_dens'"),
        ("[train]\nmodels = ['cascade_dense_hybrid']\n", "kind 'cascade' has no hybrid granularity"),
        ("[train]\nfinal = 'stack'\n", "[train] final: 'stack' is none of: auto, easy_dense"),
        ("[train]\ndevice = 'tpu'\n", "[train] device: 'tpu' is none of auto, cpu, gpu, cuda"),
        ("[train]\nscheduler = 'local:0'\n", "[train] scheduler: 'local:0'"),
        ("[train]\ngain_share = 0\n", "[train] gain_share: must be in (0, 1], got 0"),
        ("[train]\ngain_share = 1.2\n", "[train] gain_share: must be in (0, 1], got 1.2"),
        ("[train]\nearly_stopping_metric = 'auc'\n", "[train] early_stopping_metric: 'auc' is none of logloss, aid_auc"),
        ("[train.lgbm]\nnum_leafs = 7\n", "[train] lgbm.num_leafs: is not a LightGBM parameter"),
        ("[train.lgbm]\nnum_threads = 7\n", "[train] lgbm.num_threads: is set by the pipeline itself; use [train] n_jobs"),
        ("[train.lgbm]\nobjective = 'huber'\n", "[train] lgbm.objective: is set by the pipeline itself"),
        ("[train.lgbm]\nrandom_state = 3\n", "[train] lgbm.random_state: is set by the pipeline itself; use [train] seed"),
        ("[features]\nctr_aggregations = ['mean', 'median']\n", "[features] ctr_aggregations: ['mean', 'median']"),
        ("[features]\nmissing_threshold = 1.5\n", "[features] missing_threshold: must be in [0, 1]"),
        ("[folds]\nn_folds = 1\n", "[folds] n_folds: must be at least 2, got 1"),
        ("[load]\nchunk_lines = 0\n", "[load] chunk_lines: must be at least 1"),
        ("[train\n", "invalid TOML"),
    ],
)
def test_each_mistake_is_one_message_naming_the_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(LookalikeError) as err:
        load_config(path)
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value), str(err.value)


def test_lgbm_table_merges_over_the_defaults_and_reaches_the_estimator(tmp_path: Path) -> None:
    settings = load_config(_write(tmp_path, "[train]\nearly_stopping_metric = 'aid_auc'\n"
                                            "[train.lgbm]\nnum_leaves = 7\nmax_bin = 63\n")).train
    assert settings.lgbm == {**TrainSettings().lgbm, "num_leaves": 7, "max_bin": 63}
    est = build_model(parse_model("easy_dense"), settings, ModelColumns([0]))
    assert est.params["num_leaves"] == 7 and est.params["max_bin"] == 63
    assert est.group_column == 0  # the per-aid early-stopping metric is reachable from the config
    assert build_model(parse_model("easy_sparse"), settings, ModelColumns([0])).device == "cpu"
    assert config_hash(settings) != config_hash(TrainSettings()) == config_hash(TrainSettings())


def test_model_names_parse_to_their_kind_set_and_granularity() -> None:
    spec = parse_model("reference_full_hybrid")
    assert (spec.kind, spec.feature_set, spec.granularity.value, spec.per_aid) == ("reference", FeatureSet.FULL,
                                                                                    "hybrid", True)
    peraid = build_model(parse_model("easy_dense_peraid"), replace(TrainSettings(), min_positives=9), ModelColumns([0]))
    assert type(peraid).__name__ == "PerAidLGBM" and peraid.min_positives == 9 and not peraid.hybrid
    # [train] gain_share selects the columns of global models; per-aid copies keep every column
    settings = replace(TrainSettings(), gain_share=0.9)
    assert build_model(parse_model("easy_dense"), settings, ModelColumns([0])).gain_share == 0.9
    assert build_model(parse_model("easy_dense_hybrid"), settings, ModelColumns([0])).estimator.gain_share == 1.0
