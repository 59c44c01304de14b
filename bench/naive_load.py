"""Naive reference loader: the public baseline's approach, for benchmarks only.

Parse every line into a dict of strings, build a DataFrame, then one default
``CountVectorizer`` per field (which also drops one-character ids, as the
baseline did). Usage: ``python bench/naive_load.py userFeature.data``.
"""

from __future__ import annotations

import sys

import pandas as pd
import scipy.sparse as sp
from sklearn.feature_extraction.text import CountVectorizer


def naive_load(path: str) -> sp.csr_matrix:
    """Parse ``path`` the way the public baseline did; return the stacked matrix."""
    rows = []
    with open(path) as fh:
        for line in fh:
            d = {}
            for group in line.strip().split("|"):
                name, _, values = group.partition(" ")
                d[name] = values
            rows.append(d)
    df = pd.DataFrame(rows)
    blocks = []
    for name in df.columns:
        if name == "uid":
            continue
        try:
            blocks.append(CountVectorizer().fit_transform(df[name].fillna("")))
        except ValueError:  # only one-character ids: the default token pattern keeps none
            continue
    return sp.hstack(blocks, format="csr")


if __name__ == "__main__":
    m = naive_load(sys.argv[1])
    print(m.shape, m.nnz, file=sys.stderr)
