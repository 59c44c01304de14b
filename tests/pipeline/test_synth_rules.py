"""The rules family of the generator: conditions recomputed from the written text, probabilities by hand."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core import LookalikeError
from pipeline.synth import TRUTH_FILE, _make_world, _user_latents, generate, size_for_scale
from pipeline.synth_rules import RULES_FILE, Literal, literal_matrix

SIZE = size_for_scale("tiny", users=8000, train_rows=6000, aids=12)


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("families")
    generate(root / "latent", SIZE, seed=3)
    generate(root / "rules", SIZE, seed=3, family="rules")
    return root / "latent", root / "rules"


def _lines(path: Path) -> dict[int, dict[str, list[int]]]:
    """A plain parser of the users file: uid -> field -> ids (as written)."""
    users = {}
    for line in path.read_text().splitlines():
        groups = {g.split(" ")[0]: [int(v) for v in g.split(" ")[1:]] for g in line.split("|")}
        users[groups.pop("uid")[0]] = groups
    return users


def _satisfies(user: dict[str, list[int]], lit: dict) -> bool:
    """A literal of rules.json on one parsed line, written out case by case."""
    ids = user.get(lit["field"], [])
    if lit["op"] == "has":
        hit = lit["values"][0] in ids
    elif lit["op"] == "in":
        hit = any(v in lit["values"] for v in ids)
    elif lit["op"] == "len>=":
        hit = len(ids) >= lit["values"][0]
    elif lit["op"] == "present":
        hit = len(ids) > 0
    else:
        raise AssertionError(lit["op"])
    return not hit if lit["negate"] else hit


def test_same_users_ads_and_pairs_as_the_latent_family_other_labels(both: tuple[Path, Path]) -> None:
    latent, rules = both
    for name in ("userFeature.data", "adFeature.csv", "test1.csv"):
        assert (latent / name).read_bytes() == (rules / name).read_bytes(), name
    a, b = pd.read_csv(latent / "train.csv"), pd.read_csv(rules / "train.csv")
    assert a[["aid", "uid"]].equals(b[["aid", "uid"]]) and not a["label"].equals(b["label"])
    assert (rules / RULES_FILE).exists() and not (latent / RULES_FILE).exists()
    # the conversion rate is the latent family's target, about 4.8%
    assert 0.03 < (b["label"] == 1).mean() < 0.07


def test_truth_probabilities_are_the_rules_of_rules_json_on_the_written_lines(both: tuple[Path, Path]) -> None:
    _, rules = both
    users = _lines(rules / "userFeature.data")
    spec = json.loads((rules / RULES_FILE).read_text())["aids"]
    truth = pd.read_csv(rules / TRUTH_FILE)
    # the unobserved part, by hand: the users' propensity, drawn as the latent family draws it
    world = _make_world(SIZE, 3)
    propensity = dict(zip(world.uids.tolist(), _user_latents(world, 0, SIZE.users)["propensity"].tolist()))
    matched = 0
    for aid, uid, prob in truth[["aid", "uid", "prob"]].itertuples(index=False):
        ad = spec[str(aid)]
        logit = ad["intercept"] + propensity[uid]
        for rule in ad["rules"]:
            if all(_satisfies(users[uid], lit) for lit in rule["all"]):
                logit += rule["weight"]
                matched += 1
        assert prob == pytest.approx(1 / (1 + math.exp(-logit)), abs=1e-8), (aid, uid)
    assert matched > len(truth) // 2  # the rules are not empty sets


def test_every_aid_draws_from_the_global_product_type_advertiser_and_own_pools(both: tuple[Path, Path]) -> None:
    _, rules = both
    spec = json.loads((rules / RULES_FILE).read_text())["aids"]
    ads = pd.read_csv(rules / "adFeature.csv").set_index("aid")
    shared: dict[str, set[str]] = {}
    for aid, ad in spec.items():
        pools = [r["pool"] for r in ad["rules"]]
        assert pools.count("global") == 2
        pt, adv = int(ads.loc[int(aid), "productType"]), int(ads.loc[int(aid), "advertiserId"])
        assert 1 <= pools.count(f"productType:{pt}") <= 2
        assert 1 <= pools.count(f"advertiser:{adv}") <= 3
        assert 1 <= sum(p.startswith("own:") for p in pools) <= 3
        assert all(p == "global" or p.startswith(("own:", f"productType:{pt}", f"advertiser:{adv}")) for p in pools)
        for r in ad["rules"]:
            shared.setdefault(json.dumps(r, sort_keys=True), set()).add(aid)
            assert 1 <= len(r["all"]) <= 3 and len({lit["field"] for lit in r["all"]}) == len(r["all"])
    assert any(len(aids) >= 2 for key, aids in shared.items() if '"pool": "productType' in key)


def test_literals_on_handmade_lists() -> None:
    # three users; fields in FIELDS order, each (rows, ids); only a few fields matter here
    from pipeline.schema import FIELDS

    parts = {spec.name: (np.zeros(0, np.int64), np.zeros(0, np.int64)) for spec in FIELDS}
    parts["age"] = (np.array([0, 1, 2]), np.array([2, 4, 0]))
    parts["interest1"] = (np.array([0, 0, 0, 2]), np.array([5, 9, 11, 9]))
    parts["house"] = (np.array([1]), np.array([1]))
    parts["os"] = (np.array([0, 1, 1, 2]), np.array([2, 1, 2, 0]))
    literals = [
        Literal("interest1", "has", (9,)), Literal("age", "in", (2, 4)), Literal("interest1", "len>=", (3,)),
        Literal("interest1", "present", (), True), Literal("house", "in", (1,), True), Literal("os", "in", (2,)),
    ]
    got = literal_matrix(literals, [parts[spec.name] for spec in FIELDS], 3)
    want = np.array([[1, 1, 1, 0, 1, 1], [0, 1, 0, 1, 0, 1], [1, 0, 0, 0, 1, 0]], dtype=bool)
    assert np.array_equal(got, want)


def test_the_family_is_deterministic_and_checked(tmp_path: Path, both: tuple[Path, Path]) -> None:
    _, rules = both
    generate(tmp_path / "again", SIZE, seed=3, family="rules")
    for name in (RULES_FILE, TRUTH_FILE, "train.csv"):
        assert (tmp_path / "again" / name).read_bytes() == (rules / name).read_bytes(), name
    with pytest.raises(LookalikeError, match="unknown family 'rule'"):
        generate(tmp_path / "bad", SIZE, family="rule")
    cmd = [sys.executable, "-m", "pipeline.cli", "-q", "synth", "--scale", "tiny", "--family", "rules",
           "--out", str(tmp_path / "cli")]
    assert subprocess.run(cmd, capture_output=True).returncode == 0
    assert (tmp_path / "cli" / RULES_FILE).exists()
    bad = subprocess.run(cmd[:-1] + [str(tmp_path / "cli2")] + ["--family", "x"], capture_output=True, text=True)
    assert bad.returncode == 2 and "invalid choice: 'x'" in bad.stderr
