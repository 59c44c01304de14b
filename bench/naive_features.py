"""Naive reference for the features stage: everything at the pair level, in one piece.

Usage: ``python bench/naive_features.py INTERIM CONFIG``

What a first implementation does (and what this project's first version
did): materialise the pair-level token matrix of all training rows, fit the
pruners on it, and transform all train and test pairs in one chunk each. Same
library code and the same output as ``lookalike features`` (nothing is
written), so the benchmark isolates the cost of the pair-level fit and of
unchunked transforms.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from features import FrequencyPruner, MissingRatePruner, PairFeaturizer
from pipeline.config import load_config
from pipeline.files import read_ads, read_test_pairs, read_train_pairs, read_user_matrix


def main(interim: Path, config: Path) -> None:
    """Fit on the pair-level matrix, then transform train and test whole."""
    settings = load_config(config).features
    users = read_user_matrix(interim / "users")
    train, test = read_train_pairs(interim / "pairs.npz"), read_test_pairs(interim / "pairs.npz")
    ads = read_ads(interim / "ads.csv")
    X = users.csr(train.user_row)  # the pair-level matrix
    slices = [(f.name, f.offset, f.stop) for f in users.fields]
    missing = MissingRatePruner(settings.missing_threshold, slices).fit(X)
    frequency = FrequencyPruner(settings.min_df).fit(X)
    del X
    feat = PairFeaturizer(settings.missing_threshold, settings.min_df, settings.ctr_smoothing,
                          chunk_rows=users.n_users, ctr_aggregations=settings.ctr_aggregations).fit(users, ads, train, test)
    assert np.array_equal(feat.kept_cols_, np.flatnonzero(missing.get_support() & frequency.get_support()))
    for pairs in (train, test):
        sparse, dense = feat.transform(pairs.aid_idx, pairs.uid, users.csr(pairs.user_row), y=pairs.label)
        print(pairs.aid.shape, sparse.shape, sparse.nnz, dense.shape, file=sys.stderr)
        del sparse, dense


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
