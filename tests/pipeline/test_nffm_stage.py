"""The neural model as a member of the ensemble: fields from the column names, folds, blend, refit, scorer."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from core import LookalikeError
from features import FeatureSet
from pipeline.artifact import ArtifactKind, load_artifact
from pipeline.config import NFFMSettings, TrainSettings, load_config
from pipeline.design import nffm_fields
from pipeline.files import read_predictions, read_test_pairs, read_user_matrix

torch = pytest.importorskip("torch")

from ensemble import NFFMClassifier  # noqa: E402
from pipeline.stages.train import run_train  # noqa: E402


@pytest.fixture(scope="module")
def nffm_build(built: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's features, trained again with a bag model and both neural models, the blend submitted."""
    out = tmp_path_factory.mktemp("nffm")
    b = built / "build"
    settings = replace(
        TrainSettings(), models=("easy_dense", "nffm_raw", "nffm_full"), final="blend_score", n_bags=2,
        n_estimators=25, chunk_rows=150, n_jobs=1, permutation_rows=300,
        nffm=NFFMSettings(epochs=2, batch_size=256, hidden_units=16, n_bags=2),
    )
    run_train(b / "features", b / "interim", b / "folds" / "folds.npy", out / "build", out / "reports" / "cv.md",
              settings, truth=built / "raw" / "test1.truth.csv")
    return out


def test_fields_follow_the_features_stage_names(built: Path) -> None:
    columns = built / "build" / "features" / "columns.json"
    names = json.loads(columns.read_text())
    raw, ad = nffm_fields(columns, FeatureSet.RAW)
    assert len(raw) == names["sparse_raw"] and raw[0] == "#aid"
    for name, role in zip(names["sparse"], raw):
        if name.startswith("ad:") and name != "ad:creativeSize_num":
            assert role == "ad:" + name[3:].rsplit("_", 1)[0]
        elif "=" in name:
            assert role == name.split("=")[0]
    assert "aid" in ad and "ad:advertiserId" in ad and not any("=" in f or f == "age" for f in ad)
    full, _ = nffm_fields(columns, FeatureSet.FULL)
    n_dense = len(names["dense"])
    assert len(full) == n_dense + len(names["sparse"]) + (len(full) - n_dense - len(names["sparse"]))
    assert full[0] == "-" and full[n_dense] == "#aid"  # the dense aid_idx is a category id: unused
    assert set(full[n_dense + names["sparse_raw"] : n_dense + len(names["sparse"])]) == {"-"}  # aid crosses
    assert set(full[n_dense + len(names["sparse"]) :]) == {"+"}  # the statistics are numbers
    with pytest.raises(ValueError, match="raw or full"):
        nffm_fields(columns, FeatureSet.DENSE)


def test_the_neural_models_are_full_members_of_the_ensemble(nffm_build: Path) -> None:
    cv = json.loads((nffm_build / "reports" / "cv.json").read_text())
    rows = {r["model"]: r for r in cv["models"]}
    assert {"nffm_raw", "nffm_full", "blend_score"} <= set(rows) and cv["final"] == "blend_score"
    for name in ("nffm_raw", "nffm_full"):
        assert 0.4 < rows[name]["oof_mean_aid_auc"] <= 1.0
        models = load_artifact(nffm_build / "build" / "models" / f"{name}.joblib", ArtifactKind.FOLD_MODELS)
        assert all(isinstance(m, NFFMClassifier) and m.group_column == 0 and len(m.weights_) == 2 for m in models)
    manifest = json.loads((nffm_build / "build" / "models" / "scorer.json").read_text())
    assert manifest["versions"]["torch"] == torch.__version__
    report = (nffm_build / "reports" / "cv.md").read_text()
    assert "nffm_full" in report


@pytest.mark.parametrize("chunk", [301, 1])
def test_the_saved_scorer_gives_the_submission_for_any_chunking(nffm_build: Path, built: Path, chunk: int) -> None:
    scorer = load_artifact(nffm_build / "build" / "models" / "scorer.joblib", ArtifactKind.SCORER)
    assert {"nffm_raw", "nffm_full"} <= set(scorer.models)
    users = read_user_matrix(built / "build" / "interim" / "users")
    test = read_test_pairs(built / "build" / "interim" / "pairs.npz")
    rows = np.arange(len(test))[: 30 if chunk == 1 else None]
    out = np.concatenate([
        scorer.predict(scorer.aid_index(test.aid[s]), test.uid[s], users.csr(test.user_row[s]))
        for s in (rows[i : i + chunk] for i in range(0, len(rows), chunk))
    ])
    _, _, final = read_predictions(nffm_build / "build" / "pred" / "final.npz")
    assert np.array_equal(out, final[rows])


def test_nffm_settings_are_typed_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[train]\nmodels = ['nffm_raw']\n[train.nffm]\nembedding_dim = 4\nratio = 0\n")
    settings = load_config(path).train
    assert settings.nffm.embedding_dim == 4 and settings.nffm.ratio == 0.0 and settings.nffm.epochs == 4
    for text, message in [("[train.nffm]\nembeding_dim = 4\n", "unknown setting [train] nffm.embeding_dim"),
                          ("[train.nffm]\ninteractions = 'some'\n", "[train] nffm.interactions: 'some' is none of"),
                          ("[train.nffm]\nepochs = 'two'\n", "[train] nffm.epochs must be int"),
                          ("[train.nffm]\nn_bags = 0\n", "[train] nffm.n_bags: must be at least 1")]:
        path.write_text(text)
        with pytest.raises(LookalikeError, match="^" + str(path)) as err:
            load_config(path)
        assert message in str(err.value), str(err.value)
    assert NFFMSettings(hidden_units=128, hidden_layers=3).hidden == (128, 64, 32)
    assert NFFMSettings(hidden_units=0).hidden == ()


def test_asking_for_nffm_without_torch_is_one_line_saying_how_to_install(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import pipeline.config

    monkeypatch.setattr(pipeline.config, "torch_available", lambda: False)
    path = tmp_path / "c.toml"
    path.write_text("[train]\nmodels = ['easy_dense', 'nffm_full']\n")
    with pytest.raises(LookalikeError) as err:
        load_config(path)
    assert "pip install 'lookalike[nn]'" in str(err.value) and "\n" not in str(err.value)
    path.write_text("[train]\nmodels = ['easy_dense']\n")
    assert load_config(path).train.models == ("easy_dense",)  # the default config never needs it
    with pytest.raises(LookalikeError, match="nffm_dense"):
        path.write_text("[train]\nmodels = ['nffm_dense']\n")
        load_config(path)


def test_scoring_a_neural_model_without_torch_says_how_to_install(nffm_build: Path, built: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import pipeline.stages.score as score

    monkeypatch.setattr(score, "torch_available", lambda: False)
    with pytest.raises(LookalikeError, match=r"scorer.joblib: its model nffm_\w+ is the neural network, which needs "
                                             r"PyTorch: pip install 'lookalike\[nn\]'"):
        score.score_pairs(nffm_build / "build" / "models" / "scorer.joblib", built / "raw" / "test1.csv",
                          built / "raw" / "userFeature.data", nffm_build / "s.csv")
    assert not (nffm_build / "s.csv").exists()
