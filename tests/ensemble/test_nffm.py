"""The field-aware neural network: what it learns, its arithmetic against a plain reference, its contract."""

from __future__ import annotations

import pickle

import joblib
import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.metrics import roc_auc_score
from sklearn.utils.estimator_checks import parametrize_with_checks

torch = pytest.importorskip("torch")  # an optional extra; the dev extra (CI) installs it

from ensemble import BagPlan, NFFMClassifier  # noqa: E402
from ensemble.nffm import resolve_torch_device  # noqa: E402

FAST = dict(epochs=3, batch_size=64, hidden=(16,), n_jobs=1, verbose=False)


@parametrize_with_checks(
    [NFFMClassifier(**FAST)],
    # fields=None: every column a numeric input (the field roles depend on the columns, which the
    # checks vary). Expected failures, each with its reason:
    expected_failed_checks=lambda est: {
        # a few epochs of Adam on the checks' 30-row sets do not reach the accuracy asked of a classifier
        "check_classifiers_train": "a neural network needs more than the check's few rows and epochs",
    },
)
def test_sklearn_contract(estimator, check) -> None:  # noqa: ANN001
    check(estimator)


def _pair_data(n: int, seed: int = 0) -> tuple[sp.csr_matrix, np.ndarray, list[str], np.ndarray]:
    """Fields A, B (10 tokens each) and a noise field C: the log-odds are +-2.5 by a parity of (a, b),
    so neither field alone says anything (every a and every b is positive for half the b's or a's)."""
    rng = np.random.default_rng(seed)
    k = 10
    a, b, c = rng.integers(0, k, n), rng.integers(0, k, n), rng.integers(0, k, n)
    logit = np.where((a + b) % 2 == 0, 2.5, -2.5) - 0.5
    p = 1 / (1 + np.exp(-logit))
    y = (rng.random(n) < p).astype(int)
    rows = np.repeat(np.arange(n), 3)
    cols = np.c_[a, k + b, 2 * k + c].ravel()
    X = sp.csr_matrix((np.ones(3 * n, np.float32), (rows, cols)), shape=(n, 3 * k))
    return X, y, ["A"] * k + ["B"] * k + ["C"] * k, p


def test_learns_a_field_pair_interaction_that_the_linear_model_cannot() -> None:
    X, y, fields, p = _pair_data(12_000)
    train, test = slice(0, 9_000), slice(9_000, None)
    kw = dict(fields=fields, epochs=10, patience=3, batch_size=128, learning_rate=0.01, n_jobs=1, verbose=False)
    with_pairs = NFFMClassifier(**kw, hidden=()).fit(X[train], y[train])
    linear = NFFMClassifier(**kw, interactions="none", hidden=()).fit(X[train], y[train])
    oracle = roc_auc_score(y[test], p[test])
    auc_pairs = roc_auc_score(y[test], with_pairs.predict_proba(X[test])[:, 1])
    auc_linear = roc_auc_score(y[test], linear.predict_proba(X[test])[:, 1])
    assert auc_pairs > oracle - 0.03, (auc_pairs, oracle)
    assert auc_linear < 0.56, auc_linear
    assert with_pairs.pairs_.tolist() == [[0, 1], [0, 2], [1, 2]]


def test_user_ad_interactions_pair_only_user_with_ad_fields() -> None:
    X, y, fields, _ = _pair_data(500)
    est = NFFMClassifier(fields=fields, ad_fields=("A",), interactions="user_ad", **FAST).fit(X, y)
    assert est.pairs_.tolist() == [[0, 1], [0, 2]]


def _reference_logits(est: NFFMClassifier, X: sp.csr_matrix, bag: int = 0) -> np.ndarray:
    """Network ``bag``'s logits by plain loops over rows, fields and pairs, from :attr:`weights_`."""
    w = est.weights_[bag]
    n_fields, k = len(est.field_names_), est.embedding_dim
    emb = w["emb.weight"].reshape(-1, n_fields, k)  # row e: its k-vector towards each field
    lin = w["lin.weight"][:, 0]
    hidden = [(w[f"mlp.{i}.weight"], w[f"mlp.{i}.bias"]) for i in range(0, 3 * len(est.hidden) + 1, 3)]
    out = np.empty(X.shape[0])
    for r in range(X.shape[0]):
        row = X.getrow(r)
        tokens: dict[int, list[tuple[int, float]]] = {f: [] for f in range(n_fields)}
        for col, value in zip(row.indices, row.data):
            e = est.emb_of_column_[col]
            if e >= 0:
                tokens[est.field_of_row_[e]].append((e, value))
        for col, base, size in zip(est.id_columns_, est.id_base_, est.id_size_):
            v = row[0, col]
            e = base + (int(v) if 0 <= v < size - 1 else size - 1)
            tokens[est.field_of_row_[e]].append((e, 1.0))
        pooled = np.zeros((n_fields, n_fields, k))
        linear = 0.0
        for f, items in tokens.items():
            for e, value in items:
                pooled[f] += emb[e] * value / len(items)
                linear += lin[e] * value / len(items)
        products = [pooled[i, j] * pooled[j, i] for i, j in est.pairs_]
        h = np.concatenate(products)
        numeric = np.array([row[0, c] for c in est.numeric_columns_], dtype=np.float64)
        numeric = (np.sign(numeric) * np.log1p(np.abs(numeric)) - est.numeric_mean_) / est.numeric_scale_
        h = np.concatenate([h, numeric])
        for i, (W, b) in enumerate(hidden):
            h = W @ h + b
            if i < len(hidden) - 1:
                h = np.maximum(h, 0.0)
        linear_num = w["num_lin.weight"][0] @ numeric + w["num_lin.bias"][0] if len(numeric) else 0.0
        out[r] = w["bias"][0] + linear + sum(p.sum() for p in products) + linear_num + h[0]
    return out


@pytest.mark.parametrize("n_bags", [1, 3])
def test_logits_match_a_plain_loop_reference(n_bags) -> None:  # noqa: ANN001
    rng = np.random.default_rng(1)
    n = 400
    tokens = sp.random(n, 12, density=0.3, random_state=2, format="csr", dtype=np.float32)
    tokens.data[:] = rng.integers(1, 3, tokens.nnz)
    aid = rng.integers(0, 5, n).astype(np.float32)
    numeric = rng.standard_normal((n, 2)).astype(np.float32) * 10
    X = sp.hstack([sp.csr_matrix(aid[:, None]), tokens, sp.csr_matrix(numeric)], format="csr")
    y = (rng.random(n) < 0.3).astype(int)
    fields = ["#aid"] + ["u1"] * 5 + ["u2"] * 4 + ["-"] * 3 + ["+", "+"]
    est = NFFMClassifier(fields=fields, embedding_dim=3, n_bags=n_bags, **{**FAST, "hidden": (6, 3)}).fit(X, y)
    X_new = X.copy()
    X_new[0, 0] = 9  # an aid never seen in fit: the unknown bucket
    each = [_reference_logits(est, X_new, bag) for bag in range(n_bags)]  # the networks' mean log-odds
    np.testing.assert_allclose(est.decision_function(X_new), np.mean(each, axis=0), rtol=1e-4, atol=1e-5)
    assert len(est.weights_) == len(est.best_epoch_) == len(est.history_) == n_bags
    if n_bags > 1:
        assert np.abs(each[0] - each[1]).max() > 1e-3  # each network its own rows and initialisation


@pytest.mark.parametrize("pairs", [[(0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3)], [(0, 2), (1, 3)]])
def test_pair_products_gradient_matches_autograd_of_the_plain_gather(pairs) -> None:  # noqa: ANN001
    from ensemble._nffm_net import inverse_cells, pair_products

    n_fields, k = 4, 3
    p = torch.tensor(pairs)
    ij, ji = p[:, 0] * n_fields + p[:, 1], p[:, 1] * n_fields + p[:, 0]
    inverse = inverse_cells(ij, ji, n_fields * n_fields)
    pooled = torch.randn(5, n_fields * n_fields, k, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(5, len(pairs), k, dtype=torch.float64)
    (pair_products(pooled, ij, ji, inverse) * weight).sum().backward()
    ours = pooled.grad.clone()
    pooled.grad = None
    # the plain loop: d(a * b) / da = b, scattered into each pair's two cells; every other cell 0
    plain = torch.zeros_like(pooled)
    with torch.no_grad():
        for q, (i, j) in enumerate(pairs):
            plain[:, i * n_fields + j] += weight[:, q] * pooled[:, j * n_fields + i]
            plain[:, j * n_fields + i] += weight[:, q] * pooled[:, i * n_fields + j]
    torch.testing.assert_close(ours, plain)
    assert torch.autograd.gradcheck(lambda x: pair_products(x, ij, ji, inverse), (pooled,))


def test_pickle_and_joblib_round_trip_give_identical_predictions(tmp_path) -> None:  # noqa: ANN001
    X, y, fields, _ = _pair_data(800)
    est = NFFMClassifier(fields=fields, **FAST).fit(X, y)
    before = est.predict_proba(X)
    joblib.dump(est, tmp_path / "m.joblib")
    loaded = joblib.load(tmp_path / "m.joblib")
    assert "_net_cache" not in pickle.loads(pickle.dumps(est)).__dict__  # weights as NumPy arrays only
    assert all(isinstance(v, np.ndarray) for weights in loaded.weights_ for v in weights.values())
    np.testing.assert_array_equal(loaded.predict_proba(X), before)


def test_encoding_and_scaling_in_blocks_equal_the_plain_computation(monkeypatch) -> None:  # noqa: ANN001
    import ensemble.nffm as nffm_module

    rng = np.random.default_rng(4)
    X, y, fields, _ = _pair_data(1000)
    numeric = rng.standard_normal((1000, 3)) * [1.0, 10.0, 100.0]
    numeric[rng.random((1000, 3)) < 0.2] = np.nan  # missing values: left out of the mean and spread
    numeric[:, 2] = np.where(rng.random(1000) < 0.5, 0.0, numeric[:, 2])  # stored zeros and implicit zeros
    X = sp.hstack([X, sp.csr_matrix(numeric.astype(np.float32))], format="csr")
    fields = fields + ["+"] * 3
    rows = np.sort(rng.choice(1000, 700, replace=False))
    est = NFFMClassifier(fields=fields, **FAST)
    est._check_params(X.shape[1])
    est._learn_columns(X, rows)
    squashed = np.sign(numeric[rows]) * np.log1p(np.abs(numeric[rows]))  # the plain computation
    np.testing.assert_allclose(est.numeric_mean_, np.nanmean(squashed, axis=0), rtol=1e-6)
    np.testing.assert_allclose(est.numeric_scale_, np.nanstd(squashed, axis=0), rtol=1e-5)
    whole = est._encode(X, rows)
    monkeypatch.setattr(nffm_module, "_BLOCK_ROWS", 7)
    blocks = NFFMClassifier(fields=fields, **FAST)
    blocks._check_params(X.shape[1])
    blocks._learn_columns(X, rows)
    np.testing.assert_allclose(blocks.numeric_mean_, est.numeric_mean_, rtol=1e-6)
    np.testing.assert_allclose(blocks.numeric_scale_, est.numeric_scale_, rtol=1e-6)
    parts = est._encode(X, rows)
    assert (parts.tokens != whole.tokens).nnz == 0 and parts.tokens.shape == whole.tokens.shape
    np.testing.assert_array_equal(parts.numeric, whole.numeric)
    one_by_one = est._encode(X[rows])
    assert (one_by_one.tokens != whole.tokens).nnz == 0


def test_predictions_do_not_depend_on_the_chunking() -> None:
    X, y, fields, _ = _pair_data(1500)
    est = NFFMClassifier(fields=fields, **FAST).fit(X, y)
    whole = est.predict_proba(X)[:, 1]
    for size in (1, 7, 500):
        parts = np.concatenate([est.predict_proba(X[i : i + size])[:, 1] for i in range(0, X.shape[0], size)])
        assert parts.tobytes() == whole.tobytes()


def test_deterministic_on_the_cpu_for_a_fixed_seed_and_thread_count() -> None:
    X, y, fields, _ = _pair_data(1500)
    kw = dict(fields=fields, **{**FAST, "n_jobs": 2})
    a = NFFMClassifier(**kw).fit(X, y).predict_proba(X)
    b = NFFMClassifier(**kw).fit(X, y).predict_proba(X)
    c = NFFMClassifier(**kw, random_state=1).fit(X, y).predict_proba(X)
    assert a.tobytes() == b.tobytes()
    assert not np.array_equal(a, c)


def test_undersampling_is_undone_in_the_probabilities() -> None:
    rng = np.random.default_rng(3)
    n = 20_000
    X = sp.csr_matrix(rng.standard_normal((n, 3)).astype(np.float32))
    y = (rng.random(n) < 0.05).astype(int)  # nothing to learn: the calibrated score is the base rate
    est = NFFMClassifier(ratio=1.0, **FAST).fit(X, y)
    n_neg = int((y == 0).sum())
    not_held = n_neg - round(est.validation_fraction * n_neg)  # negatives outside the early-stopping share
    assert est.negative_share_ == (y[est.plan(y).bags[0]] == 0).sum() / not_held < 0.1
    assert est.predict_proba(X)[:, 1].mean() == pytest.approx(y.mean(), abs=0.015)


@pytest.mark.parametrize("n_bags", [1, 2])
def test_plan_restricted_to_its_rows_trains_the_same_model(n_bags) -> None:  # noqa: ANN001
    X, y, fields, _ = _pair_data(3000)
    est = NFFMClassifier(fields=fields, ratio=1.0, n_bags=n_bags, **FAST)
    plan = est.plan(y)
    rows, local = plan.restrict()
    assert len(rows) < len(y)
    full = NFFMClassifier(**est.get_params()).fit(X, y).predict_proba(X)
    part = NFFMClassifier(**est.get_params()).fit(X[rows], y[rows], plan=local).predict_proba(X)
    assert full.tobytes() == part.tobytes()
    assert isinstance(plan, BagPlan) and len(plan.bags) == n_bags
    for fit, stop in zip(plan.bags, plan.stops, strict=True):
        assert not np.intersect1d(fit, stop).size  # early stopping never on a training row
        assert set(y[fit]) == set(y[stop]) == {0, 1}
    if n_bags > 1:  # each network its own negatives and held-out rows
        assert not np.array_equal(plan.bags[0], plan.bags[1]) and not np.array_equal(plan.stops[0], plan.stops[1])
    with pytest.raises(ValueError, match="bag"):
        NFFMClassifier(**{**est.get_params(), "n_bags": n_bags + 1}).fit(X[rows], y[rows], plan=local)


def test_early_stopping_keeps_the_best_epoch() -> None:
    X, y, fields, _ = _pair_data(3000)
    est = NFFMClassifier(fields=fields, epochs=6, patience=0, learning_rate=0.05,
                         **{k: v for k, v in FAST.items() if k != "epochs"}).fit(X, y)
    aucs = [h["stop_auc"] for h in est.history_[0]]
    assert est.best_epoch_[0] == int(np.argmax(aucs)) + 1
    assert len(aucs) == est.epochs or aucs[-1] <= max(aucs[:-1])


def test_bad_parameters_and_devices_are_clear_errors() -> None:
    X, y, fields, _ = _pair_data(200)
    with pytest.raises(ValueError, match="roles for"):
        NFFMClassifier(fields=fields[:-1], **FAST).fit(X, y)
    with pytest.raises(ValueError, match="both a token field and an id field"):
        NFFMClassifier(fields=["#A"] + fields[1:], **FAST).fit(X, y)
    with pytest.raises(ValueError, match="interactions"):
        NFFMClassifier(fields=fields, interactions="some", **FAST).fit(X, y)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            resolve_torch_device("cuda")
        assert resolve_torch_device("auto") == "cpu"
