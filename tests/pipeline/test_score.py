"""Reloading the saved scoring pipeline: exact round trip, new users, missing pairs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core import InputFormatError
from pipeline.artifact import ArtifactKind, load_artifact
from pipeline.design import Refit
from pipeline.files import read_predictions, read_test_pairs, read_train_pairs, read_user_matrix
from pipeline.stages.score import score_pairs, skipped_path

LOOKALIKE = Path(sys.executable).parent / "lookalike"


@pytest.fixture(scope="module")
def trained(built: Path) -> Path:
    """The session's build: its submitted prediction is the stack (every model, global and per aid, feeds it)."""
    return built


def test_report_has_the_per_aid_table(trained: Path) -> None:
    from ensemble import PerAidLGBM

    report = (trained / "reports/cv.md").read_text()
    table = report[report.index("## Per aid") :].splitlines()
    header = next(line for line in table if line.startswith("| aid |"))
    assert "reference_raw_peraid" in header and "easy_dense_hybrid" in header
    assert header.endswith("| blend_rank favours | blend_score favours | stack favours |")
    rows = [line for line in table if line.startswith("| ") and not line.startswith("| aid")]
    train = read_train_pairs(trained / "build/interim/pairs.npz")
    assert len(rows) == len(np.unique(train.aid))
    peraid = load_artifact(trained / "build/models/reference_raw_peraid.joblib", ArtifactKind.FOLD_MODELS)
    assert all(isinstance(m, PerAidLGBM) and m.models_ for m in peraid)
    if any(m.fallback_ for m in peraid):  # small seeds are marked
        assert "*" in "".join(rows)


def test_score_command_reproduces_the_submission_byte_for_byte(trained: Path) -> None:
    out = trained / "scores.csv"
    res = subprocess.run(
        [str(LOOKALIKE), "score", "--model", str(trained / "build/models/scorer.joblib"),
         "--pairs", str(trained / "raw/test1.csv"), "--users", str(trained / "raw/userFeature.data"),
         "--out", str(out), "--chunk-rows", "50"],
        capture_output=True, text=True,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert out.read_bytes() == (trained / "sub/submission.csv").read_bytes()


@pytest.mark.parametrize("chunk", [592, 37, 1])
def test_reloaded_scorer_equals_the_pipeline_predictions_exactly(trained: Path, chunk: int) -> None:
    build = trained / "build"
    scorer = load_artifact(build / "models/scorer.joblib", ArtifactKind.SCORER)
    assert scorer.final == "stack" and scorer.combiner is not None and len(scorer.models) == 7
    assert scorer.combiner.by_seed_size
    # refitted on all rows: one estimator per model, whose CTR statistics leave no fold out
    assert all(m.tasks == [Refit()] and len(m.estimators) == 1 for m in scorer.models.values())
    users = read_user_matrix(build / "interim/users")
    test = read_test_pairs(build / "interim/pairs.npz")
    rows = np.arange(len(test))[: 40 if chunk == 1 else None]  # chunks of one row: a prefix suffices
    out = np.concatenate([
        scorer.predict(scorer.aid_index(test.aid[s]), test.uid[s], users.csr(test.user_row[s]))
        for s in (rows[i : i + chunk] for i in range(0, len(rows), chunk))
    ])
    aid, uid, final = read_predictions(build / "pred/final.npz")
    assert np.array_equal(aid, test.aid) and np.array_equal(uid, test.uid)
    assert np.array_equal(out, final[rows])


def _user_lines(path: Path) -> dict[int, str]:
    lines = path.read_text().splitlines()
    return {int(line.split("|")[0].split()[1]): line for line in lines}


def test_new_users_file_in_another_order_with_unseen_ids(trained: Path, tmp_path: Path) -> None:
    """Only the pairs' users are needed, in any order; unseen ids are ignored; a new user is scored."""
    raw = trained / "raw"
    test = pd.read_csv(raw / "test1.csv").iloc[::3].iloc[::-1]  # a subset, reordered
    lines = _user_lines(raw / "userFeature.data")
    kept = [lines[u] for u in sorted(set(test["uid"]), reverse=True)]
    groups = kept[0].split("|")
    multi = next(i for i, g in enumerate(groups) if g.split()[0] in ("interest1", "interest2", "kw1", "kw2", "ct"))
    groups[multi] += " 987654321"  # an id no training user had
    kept[0] = "|".join(groups)
    new_uid = max(lines) + 1
    kept.append(f"uid {new_uid}|age 3|gender 1|interest1 1 2 3|ct 1|os 2|carrier 1|LBS 7")
    (tmp_path / "users.data").write_text("\n".join(kept) + "\n")
    pairs = pd.concat([test, pd.DataFrame({"aid": [test["aid"].iloc[0]], "uid": [new_uid]})])
    pairs.to_csv(tmp_path / "pairs.csv", index=False)
    res = score_pairs(trained / "build/models/scorer.joblib", tmp_path / "pairs.csv", tmp_path / "users.data",
                      tmp_path / "scores.csv", chunk_rows=64)
    assert res == {"scored": len(pairs), "skipped": 0}
    got = pd.read_csv(tmp_path / "scores.csv")
    assert got[["aid", "uid"]].equals(pairs.reset_index(drop=True))
    sub = pd.read_csv(trained / "sub/submission.csv").set_index(["aid", "uid"])["score"]
    expect = sub.loc[list(zip(test["aid"], test["uid"]))].to_numpy()
    assert np.array_equal(got["score"].to_numpy()[: len(test)], expect)
    assert 0.0 <= got["score"].iloc[-1] <= 1.0


def test_missing_pairs_are_an_error_or_listed_in_a_side_file(trained: Path, tmp_path: Path) -> None:
    raw = trained / "raw"
    test = pd.read_csv(raw / "test1.csv").head(20).copy()
    test.loc[3, "aid"] = 999_999  # never seen by the model
    test.loc[7, "uid"] = 123_456_789  # not in the users file
    test.to_csv(tmp_path / "pairs.csv", index=False)
    args = (trained / "build/models/scorer.joblib", tmp_path / "pairs.csv", raw / "userFeature.data")
    with pytest.raises(InputFormatError, match=r"line 5: aid 999999.*line 9: aid .*uid 123456789.*--missing=skip"):
        score_pairs(*args, tmp_path / "a.csv")
    assert not (tmp_path / "a.csv").exists()
    res = score_pairs(*args, tmp_path / "b.csv", missing="skip")
    assert res == {"scored": 18, "skipped": 2}
    out = pd.read_csv(tmp_path / "b.csv")
    assert out[["aid", "uid"]].equals(test.drop(index=[3, 7]).reset_index(drop=True))
    side = pd.read_csv(skipped_path(tmp_path / "b.csv"))
    assert side["line"].tolist() == [5, 9]
    assert side["reason"].tolist() == ["aid not in the model", "uid not in userFeature.data"]


def test_score_command_refuses_a_tampered_model(trained: Path, tmp_path: Path) -> None:
    model = tmp_path / "scorer.joblib"
    data = bytearray((trained / "build/models/scorer.joblib").read_bytes())
    data[len(data) // 2] ^= 1
    model.write_bytes(bytes(data))
    (tmp_path / "scorer.json").write_text((trained / "build/models/scorer.json").read_text())
    res = subprocess.run(
        [str(LOOKALIKE), "score", "--model", str(model), "--pairs", str(trained / "raw/test1.csv"),
         "--users", str(trained / "raw/userFeature.data"), "--out", str(tmp_path / "s.csv")],
        capture_output=True, text=True,
    )
    assert res.returncode == 1
    assert "does not match its manifest" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "s.csv").exists()


def test_remap_users_sorts_rows_whatever_the_field_order(tiny_raw: Path) -> None:
    """Columns renumbered into another vocabulary stay sorted within each row and keep their ids."""
    from core import FieldBlock
    from pipeline.readers import parse_users
    from pipeline.stages.score import remap_users

    users = parse_users(tiny_raw / "userFeature.data")
    reordered, offset = [], 0
    for f in reversed(users.fields):  # the model's blocks in another order
        reordered.append(FieldBlock(f.name, offset, f.values, f.df, f.kind))
        offset += f.size
    for fields in (users.fields, reordered):
        out, dropped = remap_users(users, fields, rows=np.arange(0, users.n_users, 7))
        assert dropped == 0
        X, ref = out.csr(), users.csr(np.arange(0, users.n_users, 7))
        name = {f.offset + j: f"{f.name}={v}" for f in fields for j, v in enumerate(f.values)}
        ref_name = {f.offset + j: f"{f.name}={v}" for f in users.fields for j, v in enumerate(f.values)}
        for i in range(0, X.shape[0], 11):
            got = [name[c] for c in X.indices[X.indptr[i]:X.indptr[i + 1]]]
            want = [ref_name[c] for c in ref.indices[ref.indptr[i]:ref.indptr[i + 1]]]
            assert sorted(got) == sorted(want)
            assert list(X.indices[X.indptr[i]:X.indptr[i + 1]]) == sorted(X.indices[X.indptr[i]:X.indptr[i + 1]])
    # a vocabulary without half of interest1's ids: those are dropped and counted, the rest kept
    rows = np.arange(0, users.n_users, 3)
    small, offset = [], 0
    for f in users.fields:
        values = f.values[::2] if f.name == "interest1" else f.values
        small.append(FieldBlock(f.name, offset, values, f.df[: len(values)], f.kind))
        offset += len(values)
    out, dropped = remap_users(users, small, rows=rows)
    ref = users.csr(rows)
    i1 = next(f for f in users.fields if f.name == "interest1")
    gone = np.isin(ref.indices, i1.offset + np.arange(1, i1.size, 2))
    assert dropped == int(gone.sum()) > 0 and out.csr().nnz == ref.nnz - dropped


@pytest.mark.parametrize("wrong", ["build/features/featurizer.joblib", "build/models/easy_dense.joblib",
                                   "build/features/columns.json", "reports/cv.md", "raw/train.csv"])
def test_a_wrong_artifact_is_one_line_naming_the_file_and_both_kinds(trained: Path, wrong: str,
                                                                      tmp_path: Path) -> None:
    res = subprocess.run(
        [str(LOOKALIKE), "score", "--model", str(trained / wrong), "--pairs", str(trained / "raw/test1.csv"),
         "--users", str(trained / "raw/userFeature.data"), "--out", str(tmp_path / "s.csv")],
        capture_output=True, text=True,
    )
    assert res.returncode == 1 and "Traceback" not in res.stderr
    line = res.stderr.strip().splitlines()[-1]
    assert str(trained / wrong) in line and "scorer" in line
    if wrong.endswith(".joblib"):  # it says what the file is instead
        assert ("featurizer" if "featurizer" in wrong else "fold models") in line
    assert not (tmp_path / "s.csv").exists()


def test_out_into_a_missing_folder_creates_it(trained: Path, tmp_path: Path) -> None:
    out = tmp_path / "new" / "deeper" / "scores.csv"
    res = score_pairs(trained / "build/models/scorer.joblib", trained / "raw/test1.csv",
                      trained / "raw/userFeature.data", out)
    assert res["scored"] > 0 and out.read_bytes() == (trained / "sub/submission.csv").read_bytes()


def test_help_names_the_side_file_as_it_is_written(tmp_path: Path) -> None:
    out = subprocess.run([str(LOOKALIKE), "score", "--help"], capture_output=True, text=True).stdout
    assert "scores.csv -> scores.skipped.csv" in " ".join(out.split())
    assert skipped_path(tmp_path / "scores.csv").name == "scores.skipped.csv"


def test_gzipped_pairs_and_users_score_like_plain_ones(trained: Path, tmp_path: Path) -> None:
    import gzip

    for name in ("test1.csv", "userFeature.data"):  # gzip under the plain names: found by magic bytes
        (tmp_path / name).write_bytes(gzip.compress((trained / "raw" / name).read_bytes()))
    score_pairs(trained / "build/models/scorer.joblib", tmp_path / "test1.csv", tmp_path / "userFeature.data",
                tmp_path / "scores.csv")
    assert (tmp_path / "scores.csv").read_bytes() == (trained / "sub/submission.csv").read_bytes()
