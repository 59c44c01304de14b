"""The explore stage on the shared tiny build: its files, and its figures against the loaded data."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core import LookalikeError
from pipeline.config import ExploreSettings
from pipeline.files import read_ads, read_train_pairs, read_user_matrix
from pipeline.stages.explore import run_explore
from tests.conftest import make


@pytest.fixture(scope="module")
def explored(built: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("explore") / "reports" / "explore.md"
    run_explore(built / "build" / "interim", out, ExploreSettings(min_support=50, association_rows=5000))
    return out


def test_the_report_links_existing_figures_and_a_profile_per_aid(explored: Path, built: Path) -> None:
    text = explored.read_text()
    for section in ("## Fields", "## Aids", "## Users across rows", "## Associations", "## Seed profiles"):
        assert section in text
    links = re.findall(r"\((explore/[^)]+\.png)\)", text)
    assert "explore/aids.png" in links and "explore/association.png" in links
    for link in links:
        assert (explored.parent / link).stat().st_size > 1000, link
    train = read_train_pairs(built / "build" / "interim" / "pairs.npz")
    ads = read_ads(built / "build" / "interim" / "ads.csv")
    with_rows = set(ads.aids[np.unique(train.aid_idx)].tolist())
    assert {int(p.stem) for p in (explored.parent / "seeds").glob("*.csv")} == with_rows
    users = read_user_matrix(built / "build" / "interim" / "users")
    for f in users.fields:
        assert f"| {f.name} | {f.kind} |" in text


def test_the_report_figures_are_the_loaded_data(explored: Path, built: Path) -> None:
    """The per-aid rows and rates, the history rows and one field's presence, recomputed from the pairs."""
    interim = built / "build" / "interim"
    train, ads = read_train_pairs(interim / "pairs.npz"), read_ads(interim / "ads.csv")
    users = read_user_matrix(interim / "users")
    text = explored.read_text()
    frame = pd.DataFrame({"aid": train.aid, "y": train.label})
    for aid, g in frame.groupby("aid"):
        assert f"| {aid} | {len(g):,} | {int(g.y.sum()):,} | {g.y.mean():.4f} |" in text
    # the field "age": present for a row whose user has an age token
    block = users.block("age")
    has = np.array([((users.indices[users.indptr[u]:users.indptr[u + 1]] >= block.offset)
                     & (users.indices[users.indptr[u]:users.indptr[u + 1]] < block.stop)).any()
                    for u in train.user_row])
    assert f"| age | {block.kind} | {has.mean():.3f} |" in text
    # a seed profile: the first row's counts recomputed for its aid and token
    aid = int(ads.aids[np.bincount(train.aid_idx).argmax()])
    prof = pd.read_csv(explored.parent / "seeds" / f"{aid}.csv")
    top = prof.iloc[0]
    col = users.block(top["field"]).offset + int(np.flatnonzero(users.block(top["field"]).values == top["value"])[0])
    rows = np.flatnonzero(train.aid == aid)
    holds = np.array([col in users.indices[users.indptr[u]:users.indptr[u + 1]] for u in train.user_row[rows]])
    assert top["positives"] == int((holds & (train.label[rows] == 1)).sum())
    assert top["negatives"] == int((holds & (train.label[rows] == 0)).sum())


def test_explore_refuses_a_folder_that_was_not_loaded(tmp_path: Path) -> None:
    with pytest.raises(LookalikeError, match="run `make load` first"):
        run_explore(tmp_path / "nothing", tmp_path / "explore.md")
    assert not (tmp_path / "explore.md").exists()


def test_make_explore_writes_the_report(built: Path) -> None:
    res = make(built, "explore", config=built / "config.toml")
    assert res.returncode == 0, res.stderr[-2000:]
    assert (built / "reports" / "explore.md").exists() and (built / "reports" / "seeds").is_dir()
