"""The pair featurizer against naive loops over the raw text files, and chunk independence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from features.featurizer import PairFeaturizer, field_codes
from pipeline.files import read_ads, read_test_pairs, read_train_pairs, read_user_matrix
from pipeline.stages.load import run_load


@pytest.fixture(scope="module")
def loaded(tiny_raw: Path, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    out = tmp_path_factory.mktemp("interim")
    run_load(tiny_raw / "userFeature.data", tiny_raw / "adFeature.csv", tiny_raw / "train.csv",
             tiny_raw / "test1.csv", out)
    return (read_user_matrix(out / "users"), read_ads(out / "ads.csv"),
            read_train_pairs(out / "pairs.npz"), read_test_pairs(out / "pairs.npz"))


def _naive_users(path: Path) -> dict[int, dict[str, list[int]]]:
    users = {}
    for line in path.read_text().splitlines():
        groups = dict((g.split()[0], [int(v) for v in g.split()[1:]]) for g in line.split("|"))
        users[groups.pop("uid")[0]] = groups
    return users


def test_dense_columns_match_loops_over_the_text(loaded, tiny_raw: Path) -> None:  # noqa: ANN001
    users, ads, train, test = loaded
    feat = PairFeaturizer(min_df=3, chunk_rows=50).fit(users, ads, train, test)
    _, dense = feat.transform(train.aid_idx, train.uid, users.csr(train.user_row), y=train.label)
    col = {name: dense[:, j] for j, name in enumerate(feat.dense_names_)}
    text = _naive_users(tiny_raw / "userFeature.data")
    labels = pd.read_csv(tiny_raw / "train.csv")
    all_uids = list(labels["uid"]) + list(pd.read_csv(tiny_raw / "test1.csv")["uid"])
    for i in range(0, len(train.uid), 17):
        u = int(train.uid[i])
        fields = text[u]
        assert col["len_kw1"][i] == len(set(fields.get("kw1", [])))
        assert col["age"][i] == (fields["age"][0] if "age" in fields else -1)
        assert col["count_uid"][i] == all_uids.count(u)
        others = labels[(labels["uid"] == u)].drop(index=i)
        assert col["hist_all_pos"][i] == (others["label"] == 1).sum()  # leave-self-out
        assert col["hist_all_neg"][i] == (others["label"] == -1).sum()


def test_pruning_fitted_on_weighted_users_equals_the_pair_matrix(loaded) -> None:  # noqa: ANN001
    from features import FrequencyPruner, MissingRatePruner

    users, ads, train, test = loaded
    feat = PairFeaturizer(missing_threshold=0.9, min_df=5, chunk_rows=33).fit(users, ads, train, test)
    X = users.csr(train.user_row)
    slices = [(f.name, f.offset, f.stop) for f in users.fields]
    mask = MissingRatePruner(0.9, slices).fit(X).get_support() & FrequencyPruner(5).fit(X).get_support()
    assert np.array_equal(feat.kept_cols_, np.flatnonzero(mask))


def test_transform_does_not_depend_on_the_chunk(loaded) -> None:  # noqa: ANN001
    users, ads, train, test = loaded
    feat = PairFeaturizer(min_df=3).fit(users, ads, train, test)
    whole = feat.transform(test.aid_idx, test.uid, users.csr(test.user_row))
    parts = [feat.transform(test.aid_idx[s], test.uid[s], users.csr(test.user_row[s]))
             for s in (slice(a, a + 13) for a in range(0, len(test.uid), 13))]
    assert (whole[0] != sp.vstack([p[0] for p in parts])).nnz == 0
    assert np.array_equal(whole[1], np.vstack([p[1] for p in parts]))
    assert whole[0].shape[1] == len(feat.sparse_names_) and whole[1].shape[1] == len(feat.dense_names_)


def test_field_codes_match_a_loop(loaded) -> None:  # noqa: ANN001
    users = loaded[0]
    X = users.csr(np.arange(60))
    single, lengths = field_codes(X, users.fields)
    singles = [f for f in users.fields if f.kind == "single"]
    for r in range(60):
        cols = X.indices[X.indptr[r] : X.indptr[r + 1]]
        for k, f in enumerate(users.fields):
            assert lengths[r, k] == ((cols >= f.offset) & (cols < f.stop)).sum()
        for j, f in enumerate(singles):
            inside = cols[(cols >= f.offset) & (cols < f.stop)]
            assert single[r, j] == (inside[0] if len(inside) else -1)


def test_tokens_only_keeps_the_user_token_columns_in_their_places(loaded) -> None:  # noqa: ANN001
    users, ads, train, test = loaded
    feat = PairFeaturizer(min_df=3).fit(users, ads, train, test)
    full, dense = feat.transform(test.aid_idx, test.uid, users.csr(test.user_row))
    tokens, dense_too = feat.transform(test.aid_idx, test.uid, users.csr(test.user_row), tokens_only=True)
    start = 1 + feat.ad_onehot_.shape[1]
    stop = start + len(feat.kept_cols_)
    assert tokens.shape == full.shape and np.array_equal(dense, dense_too)
    assert (tokens[:, start:stop] != full[:, start:stop]).nnz == 0
    assert tokens[:, :start].nnz == 0 and tokens[:, stop:].nnz == 0
    assert full[:, stop:].nnz > 0  # the crosses the full rows hold
    assert all(name.split("=")[0] in {f.name for f in users.fields} for name in feat.sparse_names_[start:stop])
