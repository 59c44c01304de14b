"""The ``rules`` family of synthetic data: audiences defined by targeting rules (``lookalike synth --family rules``).

The users file, the ads file and the pairs are those of the default
``latent`` family for the same seed and size (the same marginals, byte for
byte); only who converts differs. Real advertisers often target the other way
round from a latent taste: an audience is a few rules ("interest A and aged
25-34", "keyword B or topic C, not on iOS", "app D installed"), shared in part
by the ads of one advertiser or one product type, and some users convert on
many ads. Here:

* A **literal** is a condition on one field of the written user line:
  ``has`` (a multi-valued field holds a token), ``in`` (a single-valued
  field's value, or any value of a short list, is in a set; ``LBS`` sets are
  whole hidden regions), ``len>=`` (a list has at least ``k`` ids) or
  ``present`` (the field is there); any literal may be negated. Tokens are
  picked among those held by 0.5%-20% of the first users, so a rule has
  support at every scale.
* A **rule** is the conjunction of an *anchor* literal (a token, a region, a
  demographic set, a device or a list length) and up to two broad
  *qualifiers* (demographic sets, devices, list lengths, often negated), with
  a weight: positive (``U(1, 2.5)``, the audience) or, for one rule in five,
  negative (``U(-2.5, -1)``, an exclusion).
* Rules come from **pools**: two global rules that every ad shares (heavy
  users: the ones who convert on many ads), four per product type, three to
  six per advertiser, and each ad's own. An ad takes the global rules, one or
  two of its product type's, one to three of its advertiser's and one to
  three of its own.
* The conversion probability of a pair is::

      logit P(y=1 | a, i) = b_a + sum of w_r over the rules r of ad a that user i matches + p_i

  with ``p_i ~ N(0, 0.5^2)`` the user's unobserved propensity (the latent
  family's) and ``b_a`` solved per aid for its target conversion rate, as in
  the latent family. ``test1.truth.csv`` holds these exact probabilities.

The rules are written beside the data as ``rules.json`` (read by no stage:
for reports and the tests, which recompute every condition from the text of
``userFeature.data`` with a second, plain implementation).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.schema import FIELDS, FieldSpec

__all__ = ["Audiences", "Literal", "RULES_FILE", "Rule", "draw_audiences", "literal_matrix", "rule_matrix"]

RULES_FILE = "rules.json"
FIELDS_BY_NAME: dict[str, FieldSpec] = {f.name: f for f in FIELDS}

#: token fields an anchor may name (the sparse ones of the real file are kept in: a rule on a
#: field that the pipeline prunes is a signal no model can see, as on real data)
ANCHOR_TOKEN_FIELDS = ("interest1", "interest2", "interest5", "kw1", "kw2", "topic1", "topic2", "interest3",
                       "kw3", "topic3", "appIdInstall", "appIdAction")
#: demographic fields and their value ranges (for ``in`` sets)
DEMOGRAPHICS = ("age", "gender", "education", "consumptionAbility", "carrier")
DEVICE_FIELDS = ("os", "ct")
MIN_SUPPORT, MAX_SUPPORT = 0.005, 0.20  # of users, for an anchor token


@dataclass(frozen=True)
class Literal:
    """One condition on a user's line.

    Attributes
    ----------
    field : str
        A field of the users file.
    op : {"has", "in", "len>=", "present"}
    values : tuple of int
        ``has``: the token; ``in``: the set; ``len>=``: ``(k,)``; ``present``: ``()``.
    negate : bool
    """

    field: str
    op: str
    values: tuple[int, ...] = ()
    negate: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON."""
        return {"field": self.field, "op": self.op, "values": list(self.values), "negate": self.negate}

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> Literal:
        """From :meth:`to_dict`."""
        return cls(obj["field"], obj["op"], tuple(int(v) for v in obj["values"]), bool(obj["negate"]))


@dataclass(frozen=True)
class Rule:
    """A conjunction of literals with its weight in the logit; ``pool`` says where it comes from."""

    literals: tuple[Literal, ...]
    weight: float
    pool: str

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON."""
        return {"all": [lit.to_dict() for lit in self.literals], "weight": self.weight, "pool": self.pool}

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> Rule:
        """From :meth:`to_dict`."""
        return cls(tuple(Literal.from_dict(d) for d in obj["all"]), float(obj["weight"]), str(obj["pool"]))


@dataclass
class Audiences:
    """Every rule and, per aid (by index in the ads file), the rules its audience is made of.

    Attributes
    ----------
    rules : list of Rule
    aid_rules : list of ndarray of int
        Per aid, indices into :attr:`rules`.
    literals : list of Literal
        The distinct literals of all rules (the columns of :func:`literal_matrix`).
    rule_literals : list of ndarray of int
        Per rule, its literals' indices in :attr:`literals`.
    intercepts : ndarray of float, optional
        ``b_a`` per aid (set once solved).
    """

    rules: list[Rule]
    aid_rules: list[np.ndarray]
    literals: list[Literal] = field(default_factory=list)
    rule_literals: list[np.ndarray] = field(default_factory=list)
    intercepts: np.ndarray | None = None

    def __post_init__(self) -> None:
        if not self.literals:
            index: dict[Literal, int] = {}
            self.rule_literals = []
            for rule in self.rules:
                self.rule_literals.append(np.array([index.setdefault(lit, len(index)) for lit in rule.literals]))
            self.literals = list(index)

    def weights(self) -> np.ndarray:
        """``(n_aids, n_rules)``: the weight of each rule in each aid's logit (0 where not its rule)."""
        w = np.zeros((len(self.aid_rules), len(self.rules)), dtype=np.float64)
        for a, rules in enumerate(self.aid_rules):
            w[a, rules] = [self.rules[r].weight for r in rules]
        return w

    def write(self, path: str | os.PathLike[str], aids: np.ndarray) -> None:
        """``rules.json``: per aid (by its id) its intercept and rules."""
        out = {
            "model": "logit P(y=1 | aid, user) = intercept + sum of the weights of the aid's rules the user "
                     "matches + the user's unobserved propensity ~ N(0, 0.5^2)",
            "aids": {
                str(int(aid)): {
                    "intercept": None if self.intercepts is None else float(self.intercepts[a]),
                    "rules": [self.rules[r].to_dict() for r in self.aid_rules[a]],
                }
                for a, aid in enumerate(aids)
            },
        }
        Path(path).write_text(json.dumps(out, indent=1) + "\n")


# ---------------------------------------------------------------------------
# drawing the rules
# ---------------------------------------------------------------------------
def _token_candidates(parts: list[tuple[np.ndarray, np.ndarray]], n_users: int) -> dict[str, np.ndarray]:
    """Per token field, the ids held by MIN_SUPPORT..MAX_SUPPORT of the sample's users."""
    out = {}
    for spec, (rows, ids) in zip(FIELDS, parts, strict=True):
        if spec.name not in ANCHOR_TOKEN_FIELDS or not len(ids):
            continue
        values, counts = np.unique(ids, return_counts=True)  # a list is a set: one count per user
        share = counts / max(n_users, 1)
        ok = values[(share >= MIN_SUPPORT) & (share <= MAX_SUPPORT)]
        if len(ok):
            out[spec.name] = ok
    return out


def _demographic(rng: np.random.Generator, name: str) -> Literal:
    spec = FIELDS_BY_NAME[name]
    levels = np.arange(spec.low, spec.high + 1)
    k = int(rng.integers(1, max(2, len(levels) // 2 + 1)))
    values = tuple(sorted(int(v) for v in rng.choice(levels, size=min(k, len(levels)), replace=False)))
    return Literal(name, "in", values, bool(rng.random() < 0.25))


def _device(rng: np.random.Generator) -> Literal:
    name = str(rng.choice(DEVICE_FIELDS))
    spec = FIELDS_BY_NAME[name]
    return Literal(name, "in", (int(rng.integers(spec.low, spec.high + 1)),), bool(rng.random() < 0.4))


def _length(rng: np.random.Generator) -> Literal:
    name = str(rng.choice(["interest1", "interest5", "interest2", "appIdInstall", "appIdAction", "kw1"]))
    spec = FIELDS_BY_NAME[name]
    if spec.presence < 0.5 or rng.random() < 0.3:
        return Literal(name, "present", (), bool(spec.presence >= 0.5))  # a rare field present, a common one absent
    k = max(2, int(round(spec.mean_len * rng.uniform(0.8, 1.6))))
    return Literal(name, "len>=", (k,), bool(rng.random() < 0.25))


def _region(rng: np.random.Generator, lbs_region: np.ndarray, n_regions: int) -> Literal:
    chosen = rng.choice(n_regions, size=int(rng.integers(1, 3)), replace=False)
    ids = np.flatnonzero(np.isin(lbs_region, chosen))
    ids = ids[ids >= 1]  # LBS id 0 is "unknown"
    return Literal("LBS", "in", tuple(int(v) for v in ids), False)


def _anchor(rng: np.random.Generator, tokens: dict[str, np.ndarray], lbs_region: np.ndarray, n_regions: int) -> Literal:
    kind = rng.choice(["token", "region", "demographic", "device", "length"], p=[0.5, 0.15, 0.15, 0.08, 0.12])
    if kind == "token" and tokens:
        names = sorted(tokens)
        # the common fields more often: most targeting names interests and keywords
        weight = np.array([3.0 if n in ("interest1", "interest2", "interest5", "kw1", "kw2") else 1.0 for n in names])
        name = str(rng.choice(names, p=weight / weight.sum()))
        return Literal(name, "has", (int(rng.choice(tokens[name])),), False)
    if kind == "region":
        return _region(rng, lbs_region, n_regions)
    if kind == "device":
        return _device(rng)
    if kind == "length":
        return _length(rng)
    return _demographic(rng, str(rng.choice(DEMOGRAPHICS)))


def _qualifier(rng: np.random.Generator) -> Literal:
    kind = rng.choice(["demographic", "house", "device", "length"], p=[0.6, 0.1, 0.15, 0.15])
    if kind == "house":
        return Literal("house", "in", (1,), bool(rng.random() < 0.5))
    if kind == "device":
        return _device(rng)
    if kind == "length":
        return _length(rng)
    return _demographic(rng, str(rng.choice(DEMOGRAPHICS)))


def _rule(rng: np.random.Generator, tokens: dict[str, np.ndarray], lbs_region: np.ndarray, n_regions: int,
          pool: str) -> Rule:
    n_qualifiers = int(rng.choice([0, 1, 2], p=[0.3, 0.5, 0.2]))
    literals = [_anchor(rng, tokens, lbs_region, n_regions)]
    for _ in range(n_qualifiers):
        lit = _qualifier(rng)
        if all(lit.field != other.field for other in literals):  # one condition per field
            literals.append(lit)
    weight = float(-rng.uniform(1.0, 2.5) if rng.random() < 0.2 else rng.uniform(1.0, 2.5))
    return Rule(tuple(literals), round(weight, 4), pool)


def _heavy_user_rules(rng: np.random.Generator) -> list[Rule]:
    """The global pool: heavy users (long interest lists, app actions) convert on every ad a little more."""
    k = int(round(FIELDS_BY_NAME["interest5"].mean_len * 1.5))
    return [
        Rule((Literal("interest5", "len>=", (k,)),), round(float(rng.uniform(0.6, 1.0)), 4), "global"),
        Rule((Literal("appIdAction", "present"),), round(float(rng.uniform(0.8, 1.4)), 4), "global"),
    ]


def draw_audiences(
    rng: np.random.Generator,
    advertiser: np.ndarray,
    product_type: np.ndarray,
    sample_parts: list[tuple[np.ndarray, np.ndarray]],
    n_sample_users: int,
    lbs_region: np.ndarray,
    n_regions: int,
) -> Audiences:
    """Every ad's rules, drawn from the global, product-type, advertiser and own pools.

    Parameters
    ----------
    rng : Generator
    advertiser, product_type : ndarray
        Per ad (in file order), its advertiser and product type.
    sample_parts : list of (rows, ids)
        The first user chunk's lists, one pair per field of :data:`FIELDS`
        (where anchor tokens are picked by their support).
    n_sample_users : int
    lbs_region : ndarray
        The hidden region of every ``LBS`` id.
    n_regions : int
    """
    tokens = _token_candidates(sample_parts, n_sample_users)
    rules = _heavy_user_rules(rng)
    global_ids = list(range(len(rules)))

    def pool(n: int, name: str) -> list[int]:
        start = len(rules)
        rules.extend(_rule(rng, tokens, lbs_region, n_regions, name) for _ in range(n))
        return list(range(start, len(rules)))

    pt_pools = {int(pt): pool(4, f"productType:{int(pt)}") for pt in np.unique(product_type)}
    adv_pools = {int(adv): pool(int(rng.integers(3, 7)), f"advertiser:{int(adv)}") for adv in np.unique(advertiser)}
    aid_rules = []
    for a in range(len(advertiser)):
        pt, adv = pt_pools[int(product_type[a])], adv_pools[int(advertiser[a])]
        chosen = list(global_ids)
        chosen += rng.choice(pt, size=min(len(pt), int(rng.integers(1, 3))), replace=False).tolist()
        chosen += rng.choice(adv, size=min(len(adv), int(rng.integers(1, 4))), replace=False).tolist()
        chosen += pool(int(rng.integers(1, 4)), f"own:{a}")
        aid_rules.append(np.array(sorted(chosen), dtype=np.int64))
    return Audiences(rules, aid_rules)


# ---------------------------------------------------------------------------
# evaluating them on generated users
# ---------------------------------------------------------------------------
def literal_matrix(
    literals: list[Literal], parts: list[tuple[np.ndarray, np.ndarray]], n_users: int
) -> np.ndarray:
    """``(n_users, n_literals)`` bool: whether each user of a chunk satisfies each literal.

    ``parts`` are the chunk's ``(rows, ids)`` per field of :data:`FIELDS`, as
    written to the users file (a single-valued field: one row per user that has it).
    """
    by_name = {spec.name: (rows, ids) for spec, (rows, ids) in zip(FIELDS, parts, strict=True)}
    lengths: dict[str, np.ndarray] = {}
    out = np.zeros((n_users, len(literals)), dtype=bool)
    for j, lit in enumerate(literals):
        rows, ids = by_name[lit.field]
        if lit.field not in lengths:
            lengths[lit.field] = np.bincount(rows, minlength=n_users)
        hit = np.zeros(n_users, dtype=bool)
        if lit.op in ("has", "in"):
            hit[rows[np.isin(ids, np.asarray(lit.values))]] = True
        elif lit.op == "len>=":
            hit = lengths[lit.field] >= lit.values[0]
        elif lit.op == "present":
            hit = lengths[lit.field] > 0
        else:
            raise ValueError(f"unknown literal op {lit.op!r}")
        out[:, j] = ~hit if lit.negate else hit
    return out


def rule_matrix(audiences: Audiences, literal_hits: np.ndarray) -> np.ndarray:
    """``(n_users, n_rules)`` bool: where a user satisfies every literal of a rule."""
    out = np.ones((literal_hits.shape[0], len(audiences.rules)), dtype=bool)
    for r, lits in enumerate(audiences.rule_literals):
        out[:, r] = literal_hits[:, lits].all(axis=1)
    return out
