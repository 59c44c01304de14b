"""Synthetic competition data: the real file format and shape, known truth.

The generator writes ``userFeature.data``, ``adFeature.csv``, ``train.csv`` and
``test1.csv`` exactly as ``DATA_FORMAT.md`` describes, plus
``test1.truth.csv`` (``aid,uid,label,prob``) that no training stage reads, so
reports can show the gap to the oracle AUC.

Generative model
----------------
Users (``i``):

* a latent taste ``g_i ~ N(0, I_K)`` over ``K = 12`` topics and its topic mix
  ``pi_i = softmax(1.5 * g_i)``;
* a propensity ``p_i ~ N(0, 0.5^2)`` shared by every ad (so a user's history
  on other aids is informative);
* demographics drawn from fixed marginals (``0`` = unknown is a real value),
  ``LBS`` from a long-tailed distribution over ~1,000 ids, each ``LBS`` id
  belonging to one of 30 hidden regions.

Token fields (``interest*``, ``kw*``, ``topic*``, ``appId*``) express the taste:
every token id of a field belongs to one topic (a random assignment per field).
Each token of a user's list is, with probability ``alpha`` (per field), drawn
from a topic ``k ~ pi_i`` and then from that topic's long-tailed token
distribution, otherwise from the field's long-tailed background distribution.
Lists are sets in random order; their presence rates, mean lengths and id
ranges follow ``pipeline.schema.FIELDS`` (the real file's statistics).

Ads (``a``) are grouped by advertiser. Each ad has a taste vector
``w_a = 0.6 w_global + 0.5 w_adv + 0.6 e_a`` and effects of age, gender,
education, consumption ability, house and region, each the sum of a part
shared by every ad and an ad's own deviation (0.8 of the shared scale): what
converts on one ad partly converts on all, as on the real data, and the rest
is the ad's own taste. The conversion probability of a pair is::

    logit P(y=1 | a, i) = b_a + 1.5 * <w_a, g_i> / sqrt(K)
                          + age_a[age_i] + gender_a[gender_i] + edu_a[edu_i]
                          + cons_a[cons_i] + house_a * house_i
                          + region_a[region(LBS_i)] + p_i

where ``b_a`` is solved per aid so that its conversion rate hits a target
drawn around 4.8% (per-aid variation). Rows per aid vary (log-normal), about
15% of the pairs reuse a user already used by another aid, uids are sparse
(up to ~90M at full scale), and test rows are about 25.75% of train rows.

Everything is deterministic for a seed; users are generated and written in
chunks, so the full scale streams to disk.

Families
--------
The model above is the ``latent`` family (the default). ``--family rules``
(:mod:`pipeline.synth_rules`) writes the same users, ads and pairs, and
decides who converts by targeting rules instead: each aid's audience is a few
conjunctions of conditions on tokens, demographics, regions, devices and list
lengths, shared in part by the ads of an advertiser and of a product type,
with heavy users who convert on every ad a little more. Its rules are written
to ``rules.json``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from core import LookalikeError
from pipeline.io import atomic_paths
from pipeline.synth_rules import RULES_FILE, draw_audiences, literal_matrix, rule_matrix
from pipeline.schema import (
    AD_COLUMNS,
    AD_FILE,
    FIELDS,
    TEST_FILE,
    TRAIN_FILE,
    USER_FILE,
    FieldSpec,
)

__all__ = ["FAMILIES", "SCALES", "SynthSize", "TRUTH_FILE", "generate", "size_for_scale"]

logger = logging.getLogger(__name__)

TRUTH_FILE = "test1.truth.csv"
#: generative families: who converts (the users, ads and pairs are the same for a seed)
FAMILIES = ("latent", "rules")
N_TOPICS = 12
N_REGIONS = 30
REPEAT_SHARE = 0.15
TEST_SHARE = 0.2575
BASE_RATE = 0.048
MEAN_UID_GAP = 7.9  # 11.42M users -> uids up to ~90M

#: share of a field's tokens drawn from the user's topics (the rest: background)
TOPIC_SHARE = {"interest": 0.55, "kw": 0.45, "topic": 0.45, "appId": 0.35}


@dataclass(frozen=True)
class SynthSize:
    """Row counts of one synthetic data set."""

    users: int
    train_rows: int
    test_rows: int
    aids: int


SCALES: dict[str, SynthSize] = {
    "tiny": SynthSize(3_000, 2_300, 592, 6),
    "small": SynthSize(100_000, 77_000, 19_828, 40),
    "medium": SynthSize(1_000_000, 770_000, 198_275, 173),
    "full": SynthSize(11_420_039, 8_798_814, 2_265_989, 173),
}


def size_for_scale(
    scale: str,
    users: int | None = None,
    train_rows: int | None = None,
    aids: int | None = None,
    test_rows: int | None = None,
) -> SynthSize:
    """Row counts for a named scale, with optional overrides.

    Test rows follow the train rows (25.75%) unless given.
    """
    if scale not in SCALES:
        raise LookalikeError(f"unknown scale {scale!r}; choose from {', '.join(SCALES)}")
    base = SCALES[scale]
    train = train_rows if train_rows is not None else base.train_rows
    if test_rows is None:
        test_rows = base.test_rows if train_rows is None else max(1, round(TEST_SHARE * train))
    size = SynthSize(
        users if users is not None else base.users,
        train,
        test_rows,
        aids if aids is not None else base.aids,
    )
    for name in ("users", "train_rows", "test_rows", "aids"):
        if getattr(size, name) < 1:
            raise LookalikeError(f"--{name.replace('_', '-')} must be at least 1")
    n_pairs = size.train_rows + size.test_rows
    need = n_pairs - _n_repeated(n_pairs, size.aids)
    if need > size.users:
        raise LookalikeError(
            f"--users {size.users} is too small for {n_pairs} train+test pairs "
            f"(need at least {need} users)"
        )
    return size


def _n_repeated(n_pairs: int, n_aids: int) -> int:
    """Pairs that reuse a user already used by another pair."""
    return int(round(REPEAT_SHARE * n_pairs)) if n_aids > 1 else 0


# ---------------------------------------------------------------------------
# rendering: integers and field headers to bytes, vectorised
# ---------------------------------------------------------------------------
_POW10 = 10 ** np.arange(19, dtype=np.int64)


def _n_digits(v: np.ndarray) -> np.ndarray:
    return np.searchsorted(_POW10[1:], v, side="right").astype(np.int64) + 1


def render_lines(
    prefix_id: np.ndarray, values: np.ndarray, line_end: np.ndarray, prefixes: list[bytes]
) -> bytes:
    """Render items ``prefix + value [+ '\\n']`` into one byte string.

    Parameters
    ----------
    prefix_id : ndarray of int
        Index into ``prefixes`` of the text written before each value.
    values : ndarray of int64
        Non-negative integers, one per item.
    line_end : ndarray of bool
        Whether a newline follows the item.
    prefixes : list of bytes
        The prefix texts (``b" "``, ``b"|age "``, ...).
    """
    table_len = np.array([len(p) for p in prefixes], dtype=np.int64)
    table_start = np.r_[0, np.cumsum(table_len)[:-1]]
    table = np.frombuffer(b"".join(prefixes), dtype=np.uint8)
    plen = table_len[prefix_id]
    ndig = _n_digits(values)
    size = plen + ndig + line_end
    end = np.cumsum(size)
    start = end - size
    out = np.empty(int(end[-1]) if len(end) else 0, dtype=np.uint8)
    # prefix bytes: one gather over every prefix byte of every item
    item = np.repeat(np.arange(len(plen)), plen)
    offset = np.arange(len(item)) - np.repeat(np.cumsum(plen) - plen, plen)
    out[start[item] + offset] = table[table_start[prefix_id[item]] + offset]
    vstart = start + plen
    for k in range(int(ndig.max(initial=1))):
        has = ndig > k
        out[(vstart + ndig - 1 - k)[has]] = (values[has] // _POW10[k] % 10 + 48).astype(np.uint8)
    out[(end - 1)[line_end]] = 10
    return out.tobytes()


# ---------------------------------------------------------------------------
# the latent world
# ---------------------------------------------------------------------------
def _zipf_rank(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """Ranks in ``[0, n)`` with P(rank) roughly proportional to 1/(rank+1)."""
    r = np.floor(np.exp(rng.random(size) * np.log(n + 1.0))).astype(np.int64) - 1
    return np.minimum(r, n - 1)


def _zipf_probs(n: int, s: float = 1.0) -> np.ndarray:
    p = 1.0 / np.arange(1, n + 1) ** s
    return p / p.sum()


@dataclass
class _World:
    """Parameters shared by every chunk (small; users' latents are per chunk)."""

    seed: int
    size: SynthSize
    uids: np.ndarray  # uid of each user row, in file order
    token_perm: dict[str, np.ndarray]  # field -> permutation of its ids (rank -> id-low)
    lbs_ids: np.ndarray  # LBS ids by popularity rank
    lbs_region: np.ndarray  # LBS id -> region


def _make_world(size: SynthSize, seed: int) -> _World:
    rng = np.random.default_rng([seed, 0])
    gaps = rng.integers(1, int(2 * MEAN_UID_GAP), size=size.users, dtype=np.int64)
    uids = rng.permutation(np.cumsum(gaps))
    token_perm = {
        f.name: rng.permutation(f.high - f.low + 1) for f in FIELDS if f.high - f.low + 1 > 1
    }
    lbs_high = FIELDS_BY_NAME["LBS"].high
    lbs_ids = 1 + rng.permutation(lbs_high)
    lbs_region = rng.integers(0, N_REGIONS, size=lbs_high + 1)
    return _World(seed, size, uids, token_perm, lbs_ids, lbs_region)


FIELDS_BY_NAME: dict[str, FieldSpec] = {f.name: f for f in FIELDS}

_MARGINALS: dict[str, np.ndarray] = {
    "age": np.array([0.03, 0.22, 0.30, 0.22, 0.15, 0.08]),
    "gender": np.array([0.02, 0.55, 0.43]),
    "education": np.array([0.05, 0.10, 0.25, 0.25, 0.15, 0.10, 0.06, 0.04]),
    "consumptionAbility": np.array([0.03, 0.62, 0.35]),
    "carrier": np.array([0.05, 0.45, 0.30, 0.20]),
}


def _user_latents(world: _World, start: int, stop: int) -> dict[str, np.ndarray]:
    """Latent and demographic values of users ``start:stop`` (chunk-seeded)."""
    rng = np.random.default_rng([world.seed, 1, start])
    n = stop - start
    out: dict[str, np.ndarray] = {
        "taste": rng.standard_normal((n, N_TOPICS)).astype(np.float32),
        "propensity": (0.5 * rng.standard_normal(n)).astype(np.float32),
    }
    for name, p in _MARGINALS.items():
        out[name] = rng.choice(len(p), size=n, p=p)
    lbs = world.lbs_ids[_zipf_rank(rng, len(world.lbs_ids), n)]
    out["LBS"] = np.where(rng.random(n) < 0.01, 0, lbs)
    out["house"] = (rng.random(n) < FIELDS_BY_NAME["house"].presence).astype(np.int64)
    return out


# ---------------------------------------------------------------------------
# token lists
# ---------------------------------------------------------------------------
def _list_lengths(rng: np.random.Generator, spec: FieldSpec, n: int) -> np.ndarray:
    vocab = spec.high - spec.low + 1
    cap = min(spec.max_len, vocab)
    if spec.max_len <= 5 and spec.mean_len >= 4.0:  # kw/topic: mostly the maximum
        short = rng.random(n) < (spec.max_len - spec.mean_len) / 2.0
        lens = np.where(short, rng.integers(1, spec.max_len, size=n), spec.max_len)
    elif spec.mean_len >= 4.0:  # long lists: log-normal around the mean
        lens = np.rint(rng.lognormal(np.log(spec.mean_len) - 0.18, 0.6, size=n))
    else:  # short lists (marriageStatus, ct, os): 1 + Poisson
        lens = 1 + rng.poisson(spec.mean_len - 1.0, size=n)
    return np.clip(lens, 1, cap).astype(np.int64)


def _topic_share(name: str) -> float:
    for prefix, share in TOPIC_SHARE.items():
        if name.startswith(prefix):
            return share
    return 0.0


def _small_vocab_lists(
    rng: np.random.Generator, spec: FieldSpec, mix: np.ndarray, lens: np.ndarray, perm: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Sets without replacement (Gumbel top-k) from each user's token distribution."""
    vocab = spec.high - spec.low + 1
    base = _zipf_probs(vocab, 0.8)[np.argsort(perm)]  # popularity of each id
    alpha = _topic_share(spec.name)
    logp = np.log(base, dtype=np.float32)[None, :].repeat(len(lens), axis=0)
    if alpha > 0:
        topic_of_id = np.argsort(perm) % N_TOPICS  # id's rank mod K, as for large vocabularies
        by_topic = np.zeros((N_TOPICS, vocab))
        by_topic[topic_of_id, np.arange(vocab)] = 1.0
        by_topic *= base
        mass = by_topic.sum(axis=1, keepdims=True)
        by_topic = np.where(mass > 0, by_topic / np.where(mass > 0, mass, 1.0), base)
        logp = np.log((1 - alpha) * base + alpha * (mix @ by_topic) + 1e-12).astype(np.float32)
    keys = logp + rng.gumbel(size=logp.shape).astype(np.float32)
    order = np.argsort(-keys, axis=1)
    take = np.arange(vocab)[None, :] < lens[:, None]
    rows = np.broadcast_to(np.arange(len(lens))[:, None], order.shape)[take]
    return rows, order[take] + spec.low


def _large_vocab_lists(
    rng: np.random.Generator, spec: FieldSpec, mix: np.ndarray, lens: np.ndarray, perm: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Draws with replacement from a long-tailed mixture, deduplicated per user."""
    vocab = spec.high - spec.low + 1
    rows = np.repeat(np.arange(len(lens)), lens)
    n = len(rows)
    ranks = _zipf_rank(rng, vocab, n)
    topical = rng.random(n) < _topic_share(spec.name)
    if topical.any():
        cum = np.cumsum(mix[rows[topical]], axis=1)
        u = rng.random(int(topical.sum()))[:, None]
        topic = np.minimum((cum < u).sum(axis=1), N_TOPICS - 1)
        per_topic = vocab // N_TOPICS
        r = _zipf_rank(rng, per_topic, len(topic))
        ranks[topical] = topic + N_TOPICS * r
    ids = perm[ranks] + spec.low
    key = np.sort(rows * (vocab + spec.low + 1) + ids)
    key = key[np.r_[True, key[1:] != key[:-1]][: len(key)]]  # a set per user
    rows, ids = np.divmod(key, vocab + spec.low + 1)
    shuffle = np.argsort(rows + rng.random(len(rows)), kind="stable")
    return rows[shuffle], ids[shuffle]


def _field_lists(
    rng: np.random.Generator, spec: FieldSpec, lat: dict[str, np.ndarray], world: _World
) -> tuple[np.ndarray, np.ndarray]:
    """(row, value) pairs of one field for a chunk, grouped by row."""
    n = len(lat["propensity"])
    if not spec.multi:
        if spec.name == "house":
            rows = np.flatnonzero(lat["house"])
            return rows, np.ones(len(rows), dtype=np.int64)
        return np.arange(n), lat[spec.name].astype(np.int64)
    present = np.flatnonzero(rng.random(n) < spec.presence)
    lens = _list_lengths(rng, spec, len(present))
    taste = lat["taste"][present]
    mix = np.exp(1.5 * (taste - taste.max(axis=1, keepdims=True)))
    mix /= mix.sum(axis=1, keepdims=True)
    perm = world.token_perm[spec.name]
    vocab = spec.high - spec.low + 1
    make = _small_vocab_lists if vocab <= 200 else _large_vocab_lists
    rows, ids = make(rng, spec, mix, lens, perm)
    return present[rows], ids


def _user_lists(
    world: _World, start: int, stop: int
) -> tuple[dict[str, np.ndarray], list[tuple[np.ndarray, np.ndarray]]]:
    """Latents of users ``start:stop`` and their ``(rows, ids)`` per field of :data:`FIELDS` (chunk-seeded)."""
    rng = np.random.default_rng([world.seed, 2, start])
    lat = _user_latents(world, start, stop)
    return lat, [_field_lists(rng, spec, lat, world) for spec in FIELDS]


def _render_user_chunk(world: _World, start: int, stop: int) -> bytes:
    _, lists = _user_lists(world, start, stop)
    n = stop - start
    # field 0 is uid; fields 1.. follow the schema order
    parts = [(np.arange(n), world.uids[start:stop]), *lists]
    n_fields = len(parts)
    counts = np.zeros((n, n_fields), dtype=np.int64)
    for f, (rows, _) in enumerate(parts):
        counts[:, f] = np.bincount(rows, minlength=n)
    first = (np.cumsum(counts.ravel()) - counts.ravel()).reshape(n, n_fields)
    total = int(counts.sum())
    values = np.empty(total, dtype=np.int64)
    prefix = np.zeros(total, dtype=np.int64)
    for f, (rows, vals) in enumerate(parts):
        if not len(rows):
            continue
        row_start = np.r_[0, np.cumsum(counts[:, f])[:-1]]
        rank = np.arange(len(rows)) - row_start[rows]
        pos = first[rows, f] + rank
        values[pos] = vals
        prefix[pos[rank == 0]] = f + 1
    line_end = np.zeros(total, dtype=bool)
    line_end[np.cumsum(counts.sum(axis=1)) - 1] = True
    prefixes = [b" ", b"uid "] + [f"|{spec.name} ".encode() for spec in FIELDS]
    return render_lines(prefix, values, line_end, prefixes)


# ---------------------------------------------------------------------------
# ads and pairs
# ---------------------------------------------------------------------------
def _make_ads(size: SynthSize, rng: np.random.Generator) -> pd.DataFrame:
    n = size.aids
    n_adv = max(1, int(round(n * 0.45)))
    aid = np.sort(rng.choice(np.arange(1, max(2300, 3 * n)), size=n, replace=False))
    adv = rng.integers(0, n_adv, size=n)
    adv_ids = rng.choice(np.arange(1, 200_000), size=n_adv, replace=False)
    campaign = adv * 3 + rng.integers(0, 3, size=n)
    campaign_ids = rng.choice(np.arange(1, 500_000), size=3 * n_adv, replace=False)
    sizes = np.array([22, 35, 42, 44, 53, 59, 60, 65, 79, 87, 91, 93, 102, 105, 109])
    product_type = np.array([4, 6, 9, 11])[rng.choice(4, size=n, p=[0.15, 0.2, 0.25, 0.4])]
    product_id = np.where(
        product_type == 6, 0, rng.choice(np.arange(1, 120), size=n)
    )  # 0 = unknown
    return pd.DataFrame(
        {
            "aid": aid,
            "advertiserId": adv_ids[adv],
            "campaignId": campaign_ids[campaign],
            "creativeId": rng.choice(np.arange(1, 1_000_000), size=n, replace=False),
            "creativeSize": sizes[rng.integers(0, len(sizes), size=n)],
            "adCategoryId": rng.integers(1, 120, size=n),
            "productId": product_id,
            "productType": product_type,
        },
        columns=list(AD_COLUMNS),
    )


def _ad_effects(ads: pd.DataFrame, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per-ad effects: a part shared by every ad, one by the advertiser, one own."""
    n = len(ads)
    adv_codes, adv_index = np.unique(ads["advertiserId"].to_numpy(), return_inverse=True)
    w_global = rng.standard_normal(N_TOPICS)
    w_adv = rng.standard_normal((len(adv_codes), N_TOPICS))
    w = 0.6 * w_global + 0.5 * w_adv[adv_index] + 0.6 * rng.standard_normal((n, N_TOPICS))

    def shared(scale: float, *shape: int) -> np.ndarray:
        return scale * (rng.standard_normal(shape) + 0.8 * rng.standard_normal((n,) + shape))

    return {
        "w": w.astype(np.float32),
        "age": shared(0.30, 6),
        "gender": shared(0.25, 3),
        "education": shared(0.12, 8),
        "consumptionAbility": shared(0.25, 3),
        "house": shared(0.25),
        "region": shared(0.20, N_REGIONS),
    }


def _assign_pairs(
    size: SynthSize, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """aid index, user row and is-test flag of every pair, in file order."""
    weights = rng.lognormal(0.0, 0.6, size=size.aids)
    weights /= weights.sum()
    n_train = rng.multinomial(size.train_rows, weights)
    n_test = rng.multinomial(size.test_rows, weights)
    aid_idx = np.r_[np.repeat(np.arange(size.aids), n_train), np.repeat(np.arange(size.aids), n_test)]
    is_test = np.r_[np.zeros(size.train_rows, bool), np.ones(size.test_rows, bool)]
    n_pairs = len(aid_idx)
    n_repeat = _n_repeated(n_pairs, size.aids)
    n_distinct = n_pairs - n_repeat
    if n_distinct > size.users:
        raise LookalikeError(
            f"--users {size.users} is too small for {n_pairs} pairs "
            f"(need at least {n_distinct} users)"
        )
    pool = rng.permutation(size.users)
    user = np.empty(n_pairs, dtype=np.int64)
    order = rng.permutation(n_pairs)
    user[order[:n_distinct]] = pool[:n_distinct]
    user[order[n_distinct:]] = pool[rng.integers(0, n_distinct, size=n_repeat)]
    # a user appears at most once per aid: replace collisions with unused users
    key = aid_idx * size.users + user
    _, first = np.unique(key, return_index=True)
    dup = np.setdiff1d(np.arange(n_pairs), first)
    fresh = pool[n_distinct:]
    if len(dup) > len(fresh):
        raise LookalikeError(f"--users {size.users} is too small for {n_pairs} pairs")
    user[dup] = fresh[: len(dup)]
    shuffle = rng.permutation(n_pairs)
    return aid_idx[shuffle], user[shuffle], is_test[shuffle]


def _solve_intercepts(
    score: np.ndarray, aid_idx: np.ndarray, target: np.ndarray, n_aids: int
) -> np.ndarray:
    """Per-aid intercepts ``b`` with ``mean(sigmoid(b + score)) == target`` (Newton)."""
    b = np.log(target / (1 - target))
    n = np.bincount(aid_idx, minlength=n_aids).clip(min=1)
    for _ in range(40):
        p = 1.0 / (1.0 + np.exp(-(b[aid_idx] + score)))
        f = np.bincount(aid_idx, p, minlength=n_aids) / n - target
        df = np.bincount(aid_idx, p * (1 - p), minlength=n_aids) / n
        b -= f / np.maximum(df, 1e-9)
    return b


def _pair_scores(
    world: _World, ads_fx: dict[str, np.ndarray], aid_idx: np.ndarray, user: np.ndarray
) -> np.ndarray:
    """Everything in the logit but the intercept, computed chunk by chunk of users."""
    score = np.zeros(len(user))
    chunk = _chunk_users(world.size.users)
    for start in range(0, world.size.users, chunk):
        stop = min(start + chunk, world.size.users)
        sel = np.flatnonzero((user >= start) & (user < stop))
        if not len(sel):
            continue
        lat = _user_latents(world, start, stop)
        u, a = user[sel] - start, aid_idx[sel]
        s = 1.5 * np.einsum("ij,ij->i", ads_fx["w"][a], lat["taste"][u]) / np.sqrt(N_TOPICS)
        for name in ("age", "gender", "education", "consumptionAbility"):
            s += ads_fx[name][a, lat[name][u]]
        s += ads_fx["house"][a] * lat["house"][u]
        s += ads_fx["region"][a, world.lbs_region[lat["LBS"][u]]]
        s += lat["propensity"][u]
        score[sel] = s
    return score


def _rule_scores(world: _World, weights: np.ndarray, audiences, aid_idx: np.ndarray,  # noqa: ANN001
                 user: np.ndarray) -> np.ndarray:
    """The rules family's logit but the intercept: the weights of the aid's rules the user matches,
    plus the user's propensity; chunk by chunk of users (their lists generated again)."""
    score = np.zeros(len(user))
    chunk = _chunk_users(world.size.users)
    # each aid's rules and weights, padded (weight 0) to the longest list
    width = max(len(r) for r in audiences.aid_rules)
    rules = np.zeros((len(audiences.aid_rules), width), dtype=np.int64)
    for a, r in enumerate(audiences.aid_rules):
        rules[a, : len(r)] = r
    w = np.take_along_axis(weights, rules, axis=1) * (np.arange(width) < np.array(
        [len(r) for r in audiences.aid_rules])[:, None])
    for start in range(0, world.size.users, chunk):
        stop = min(start + chunk, world.size.users)
        sel = np.flatnonzero((user >= start) & (user < stop))
        if not len(sel):
            continue
        lat, parts = _user_lists(world, start, stop)
        hits = rule_matrix(audiences, literal_matrix(audiences.literals, parts, stop - start))
        u, a = user[sel] - start, aid_idx[sel]
        score[sel] = (hits[u[:, None], rules[a]] * w[a]).sum(axis=1) + lat["propensity"][u]
    return score


def _chunk_users(n_users: int) -> int:
    return int(min(n_users, 100_000))


# ---------------------------------------------------------------------------
# entry point
# ---------------------------------------------------------------------------
def generate(
    out_dir: str | os.PathLike[str], size: SynthSize, seed: int = 0, family: str = "latent"
) -> dict[str, Path]:
    """Write a synthetic competition file set into ``out_dir``.

    Parameters
    ----------
    out_dir : path
        Folder to write into (created if needed). Existing competition files
        there are never overwritten.
    size : SynthSize
        Row counts (see :data:`SCALES`).
    seed : int
        Seed; the same seed and size give byte-identical files.
    family : {"latent", "rules"}
        Who converts (see the module docstring); the users, ads and pairs
        are the same in both. ``rules`` also writes ``rules.json``.

    Returns
    -------
    dict
        File role -> path written.
    """
    if family not in FAMILIES:
        raise LookalikeError(f"unknown family {family!r}; choose from {', '.join(FAMILIES)}")
    out = Path(out_dir)
    names = {
        "users": USER_FILE,
        "ads": AD_FILE,
        "train": TRAIN_FILE,
        "test": TEST_FILE,
        "truth": TRUTH_FILE,
        **({"rules": RULES_FILE} if family == "rules" else {}),
    }
    paths = {role: out / name for role, name in names.items()}
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing:
        raise LookalikeError(
            f"refusing to overwrite existing data: {', '.join(existing)} (remove them first)"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LookalikeError(f"cannot create output folder {out}: {exc.strerror}") from exc
    if not os.access(out, os.W_OK):
        raise LookalikeError(f"output folder {out} is not writable")

    logger.info(
        "generating %s users, %s train rows, %s test rows, %s aids (seed %d, %s family) into %s",
        f"{size.users:,}", f"{size.train_rows:,}", f"{size.test_rows:,}", size.aids, seed, family, out,
    )
    world = _make_world(size, seed)
    rng = np.random.default_rng([seed, 3])
    with atomic_paths(list(paths.values())) as tmp:
        chunk = _chunk_users(size.users)
        with open(tmp[0], "wb") as fh:
            starts = range(0, size.users, chunk)
            for start in tqdm(starts, desc="users", unit="chunk", disable=None):
                fh.write(_render_user_chunk(world, start, min(start + chunk, size.users)))
        ads = _make_ads(size, rng)
        ads.to_csv(tmp[1], index=False)
        ads_fx = _ad_effects(ads, rng)  # drawn in both families: the same stream, so the same pairs
        aid_idx, user, is_test = _assign_pairs(size, rng)
        audiences = None
        if family == "rules":
            sample = min(chunk, size.users)
            audiences = draw_audiences(
                np.random.default_rng([seed, 5]), ads["advertiserId"].to_numpy(), ads["productType"].to_numpy(),
                _user_lists(world, 0, sample)[1], sample, world.lbs_region, N_REGIONS,
            )
            score = _rule_scores(world, audiences.weights(), audiences, aid_idx, user)
        else:
            score = _pair_scores(world, ads_fx, aid_idx, user)
        target = 1.0 / (1.0 + np.exp(-rng.normal(np.log(0.045 / 0.955), 0.5, size.aids)))
        rows = np.bincount(aid_idx, minlength=size.aids)
        target = np.clip(target * BASE_RATE / np.average(target, weights=rows + 1), 0.005, 0.3)
        b = _solve_intercepts(score, aid_idx, target, size.aids)
        if audiences is not None:
            audiences.intercepts = b
            audiences.write(tmp[5], ads["aid"].to_numpy())
        prob = 1.0 / (1.0 + np.exp(-(b[aid_idx] + score)))
        label = np.where(rng.random(len(prob)) < prob, 1, -1)
        aids = ads["aid"].to_numpy()[aid_idx]
        uids = world.uids[user]
        train, test = ~is_test, is_test
        pd.DataFrame({"aid": aids[train], "uid": uids[train], "label": label[train]}).to_csv(
            tmp[2], index=False
        )
        pd.DataFrame({"aid": aids[test], "uid": uids[test]}).to_csv(tmp[3], index=False)
        pd.DataFrame(
            {"aid": aids[test], "uid": uids[test], "label": label[test], "prob": prob[test]}
        ).to_csv(tmp[4], index=False, float_format="%.8f")
    logger.info(
        "train positives: %.2f%%; wrote %s", 100 * (label[train] == 1).mean(), ", ".join(names.values())
    )
    return paths
