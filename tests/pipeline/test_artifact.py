"""Saved artifacts: round trip, and refusal of anything unverified."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ensemble import EasyEnsembleLGBM
from pipeline.artifact import ArtifactKind, load_artifact, manifest_path, save_artifact
from core import LookalikeError


@pytest.fixture()
def saved(tmp_path: Path) -> tuple[Path, EasyEnsembleLGBM, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 4))
    y = (X[:, 0] + rng.standard_normal(300) > 1).astype(int)
    model = EasyEnsembleLGBM(n_bags=2, n_estimators=10, params={"min_child_samples": 2}, n_jobs=1).fit(X, y)
    path = tmp_path / "model.joblib"
    save_artifact(model, path, ArtifactKind.FOLD_MODELS, {"config_hash": "abc", "cv": {"mean_aid_auc": 0.7}})
    return path, model, X


def test_round_trip_gives_identical_predictions(saved) -> None:  # noqa: ANN001
    path, model, X = saved
    back = load_artifact(path, ArtifactKind.FOLD_MODELS)
    assert np.array_equal(back.predict_proba(X), model.predict_proba(X))
    manifest = json.loads(manifest_path(path).read_text())
    assert manifest["config_hash"] == "abc" and manifest["versions"]["lightgbm"]


def test_one_changed_byte_is_refused(saved) -> None:  # noqa: ANN001
    path, _, _ = saved
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(LookalikeError, match="does not match its manifest"):
        load_artifact(path, ArtifactKind.FOLD_MODELS, trust_versions=True)  # --trust never overrides the checksum


def test_missing_manifest_is_refused(saved) -> None:  # noqa: ANN001
    path, _, _ = saved
    manifest_path(path).unlink()
    with pytest.raises(LookalikeError, match="no manifest"):
        load_artifact(path, ArtifactKind.FOLD_MODELS)


def test_other_library_version_needs_trust(saved) -> None:  # noqa: ANN001
    path, model, X = saved
    m = json.loads(manifest_path(path).read_text())
    m["versions"]["lightgbm"] = "1.0.0"
    manifest_path(path).write_text(json.dumps(m))
    with pytest.raises(LookalikeError, match="lightgbm 1.0.0 ->"):
        load_artifact(path, ArtifactKind.FOLD_MODELS)
    assert np.array_equal(load_artifact(path, ArtifactKind.FOLD_MODELS, trust_versions=True).predict_proba(X), model.predict_proba(X))


def test_another_kind_of_artifact_is_refused_by_name_before_unpickling(saved, monkeypatch) -> None:  # noqa: ANN001
    import joblib

    path, _, _ = saved
    monkeypatch.setattr(joblib, "load", lambda *a, **k: pytest.fail("unpickled a file of the wrong kind"))
    with pytest.raises(LookalikeError, match=r"model.joblib is a fold models, not a scorer"):
        load_artifact(path, ArtifactKind.SCORER)


def test_a_manifest_without_a_kind_is_from_an_earlier_version(saved) -> None:  # noqa: ANN001
    path, _, _ = saved
    m = json.loads(manifest_path(path).read_text())
    del m["artifact"]
    manifest_path(path).write_text(json.dumps(m))
    with pytest.raises(LookalikeError, match="earlier lookalike version"):
        load_artifact(path, ArtifactKind.FOLD_MODELS, trust_versions=True)


def test_the_unpickled_class_is_checked_too(saved) -> None:  # noqa: ANN001
    path, model, _ = saved
    assert load_artifact(path, ArtifactKind.FOLD_MODELS, expected_type=EasyEnsembleLGBM) is not model
    with pytest.raises(LookalikeError, match="holds a EasyEnsembleLGBM, not a dict"):
        load_artifact(path, ArtifactKind.FOLD_MODELS, expected_type=dict)
