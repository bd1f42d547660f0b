"""TEMP's rules one by one (temp-method.md §1.3, §1.5, §1.6) on hand-made score tables."""

from __future__ import annotations

import numpy as np
import pandas as pd

from reasonsift.config import SelectConfig
from reasonsift.selection.common import balanced_cluster_pick, small_sources_whole
from reasonsift.selection.temp import (allocate_budget, allocate_sources, difficulty_filter, group_difficulty,
                                       select_temp, select_within_source)

from .conftest import make_scores


def filter_table() -> pd.DataFrame:
    """'tiny' (5 easy rows) and 'big' (60 easy rows at ~1, 40 hard rows at ~5)."""
    rng = np.random.default_rng(0)
    diff = np.r_[rng.normal(1.0, 0.1, 5), rng.normal(1.0, 0.1, 60), rng.normal(5.0, 0.1, 40)]
    src = ["tiny"] * 5 + ["big"] * 100
    df = make_scores({"tiny": 5, "big": 100}).sort_values("row_index").reset_index(drop=True)
    df["source"], df["difficulty"] = src, diff
    return df


def test_small_sources_whole_decrements_budget():
    # a: 8 <= 30 // 3 -> whole, 22 left; b: 12 > 22 // 2; c too big
    assert small_sources_whole({"a": 8, "b": 12, "c": 100}, 30) == (["a"], 22)
    # b: 10 <= 22 // 2 -> whole too, 12 left
    assert small_sources_whole({"c": 100, "b": 10, "a": 8}, 30) == (["a", "b"], 12)


def test_difficulty_filter_keeps_small_source_whole_and_high_cluster():
    df = filter_table()
    mask = difficulty_filter(df, budget=20, seed=0)  # 20 // 2 = 10 >= 5: 'tiny' taken whole
    tiny, big = df["source"] == "tiny", df["source"] == "big"
    assert mask[tiny].all()
    assert np.array_equal(mask[big], (df["difficulty"] > 3)[big])  # exactly the 40 hard rows
    # with budget 8 (8 // 2 = 4 < 5) 'tiny' is clustered too: only its higher half survives
    assert 0 < difficulty_filter(df, budget=8, seed=0)[tiny].sum() < 5


def test_no_fall_through_extras():
    """The official difficulty path adds `budget` middle-perplexity rows; ours adds none."""
    df = filter_table()
    hard = difficulty_filter(df, budget=20, seed=0)
    sel = select_temp(df, SelectConfig(budget=60, seed=0))
    assert sel.report["n_selected"] == int(hard.sum()) == 45  # 5 tiny + 40 hard, nothing else
    assert np.array_equal(sel.selected, hard)
    assert any("difficulty filter kept 45" in n for n in sel.report["notes"])
    small = select_temp(df, SelectConfig(budget=30, seed=0))
    assert small.report["n_selected"] == 30 and not (small.selected & ~hard).any()


def test_group_difficulty_and_negative_clip():
    loss = np.array([[1.0, 9.0, 3.0], [3.0, 0.0, 5.0]])  # mean first 2, mean last 4
    assert np.isclose(group_difficulty(loss), np.sqrt((4 - 2) * 4))
    assert group_difficulty(loss[:, ::-1]) == 0.0  # loss falls along Θ: clipped, not NaN


def test_allocate_budget_hand_computed():
    d = {"a": np.log(4), "b": np.log(3), "c": np.log(3)}  # softmax = 0.4, 0.3, 0.3
    # a asks int(0.4*100)=40 > 5 rows: whole (95 left); b: int(0.3/0.6*95)=47; c: int(1.0*48)=48
    assert allocate_budget({"a": 5, "b": 50, "c": 100}, d, 100) == {"a": 5, "b": 47, "c": 48}
    # b, c capped at their sizes; total capacity 96 < 100
    assert allocate_budget({"a": 5, "b": 45, "c": 46}, d, 100) == {"a": 5, "b": 45, "c": 46}
    # b (p=0.993) asks 59 > 41: whole; a gets int(0.0067*60)=0, then the 19 left over (b is full)
    assert allocate_budget({"a": 40, "b": 41}, {"a": 0.0, "b": 5.0}, 60) == {"a": 19, "b": 41}


def test_allocation_is_two_level():
    sources = np.array(["x1"] * 10 + ["x2"] * 30 + ["y1"] * 40)
    domains = np.array(["X"] * 40 + ["Y"] * 40)
    loss = np.tile([1.0, 2.0], (80, 1))  # every group has the same D_g
    alloc, diff, notes = allocate_sources(sources, domains, loss, np.ones(80, dtype=np.int64), 20)
    # domains split 10/10 first, then X's 10 splits 5/5 (a flat split would give ~7/7/6)
    assert alloc == {"x1": 5, "x2": 5, "y1": 10}
    assert np.isclose(diff["x1"], np.sqrt(2.0)) and notes == []


def test_quotas_roll_forward_smallest_first():
    sizes = {7: 2, 3: 3, 5: 10, 1: 20}
    labels = np.concatenate([np.full(n, c) for c, n in sizes.items()])
    mask, stats = balanced_cluster_pick(labels, lambda m: m, np.ones(len(labels), dtype=np.int64), 16, 2,
                                        np.random.default_rng(0))
    # quotas 16//4=4 -> 2 (short 2), 14//3=4 -> 3, 11//2=5 -> 5, 6//1=6 -> 6
    assert {c: int(mask[labels == c].sum()) for c in sizes} == {7: 2, 3: 3, 5: 5, 1: 6}
    assert stats == {"quota": 16, "small": 0, "any": 0}
    first = np.flatnonzero(labels == 5)[:5]  # rank() = identity, so the first members are taken
    assert mask[first].all()


def test_singleton_leftovers_are_seeded_random():
    labels = np.array([0, 0, 1, 1, 2, 3, 4, 5, 6])  # two pairs, five singletons
    cost = np.ones(9, dtype=np.int64)
    picks = []
    for seed in range(6):
        mask, stats = balanced_cluster_pick(labels, lambda m: m, cost, 7, 2, np.random.default_rng(seed))
        assert stats == {"quota": 4, "small": 3, "any": 0} and mask[:4].all()
        again, _ = balanced_cluster_pick(labels, lambda m: m, cost, 7, 2, np.random.default_rng(seed))
        assert np.array_equal(mask, again)
        picks.append(tuple(np.flatnonzero(mask[4:])))
    assert len(set(picks)) > 1  # which singletons depends on the seed


def test_token_quota_slack_falls_to_any_unselected():
    labels = np.array([0, 0, 1, 1])
    cost = np.array([6, 1, 6, 6])
    mask, stats = balanced_cluster_pick(labels, lambda m: m, cost, 13, 2, np.random.default_rng(0))
    # cluster 0 quota 6 takes row 0 only; cluster 1 quota 7 takes row 2; 1 token left -> row 1
    assert mask.tolist() == [True, True, True, False] and stats["any"] == 1


def brittle_blobs() -> tuple[np.ndarray, np.ndarray]:
    """Blob A: loss rises along Θ; blob B (far away): loss falls. Slopes differ within each."""
    steps = np.arange(8)
    slopes = np.linspace(0.1, 0.3, 10)
    a = 2.0 + slopes[:, None] * steps
    b = 30.0 - slopes[::-1, None] * steps
    return np.vstack([a, b]), slopes


def test_brittleness_ranking_and_sign_rule():
    loss, _ = brittle_blobs()
    mask, labels = select_within_source(loss, budget=8, examples_per_cluster=4, seed=0)
    assert len(set(labels[:10].tolist())) == 1 and labels[0] != labels[10]  # K = 8 // 4 = 2 blobs
    # A (rising): the 4 steepest rises = rows 6..9; B (falling, sign flipped): steepest falls = rows 10..13
    assert np.flatnonzero(mask).tolist() == [6, 7, 8, 9, 10, 11, 12, 13]


def test_within_source_shortcuts():
    loss, _ = brittle_blobs()
    all_mask, all_labels = select_within_source(loss, budget=20)
    assert all_mask.all() and (all_labels == -1).all()
    none_mask, _ = select_within_source(loss, budget=0)
    assert not none_mask.any()


def test_temp_token_budget_is_exact(scores):
    cfg = SelectConfig(budget_tokens=40_000, seed=1)
    sel = select_temp(scores, cfg)
    cost = scores["n_response_tokens"].to_numpy()
    hard = difficulty_filter(scores, 40_000, 1, cost=cost)
    used = int(cost[sel.selected].sum())
    assert used <= 40_000 and sel.report["selected_tokens"] == used
    assert not (sel.selected & ~hard).any()
    unselected = cost[hard & ~sel.selected]
    assert unselected.min() > 40_000 - used  # nothing eligible fits in the slack


def test_temp_report_and_clusters(scores):
    sel = select_temp(scores, SelectConfig(budget=40))
    rep = sel.report
    assert rep["n_selected"] == 40 == len(sel.ids)
    assert sum(s["budget"] for s in rep["per_source"].values()) == 40
    for src, s in rep["per_source"].items():
        assert s["selected"] == s["budget"] <= s["hard"] <= s["pool"]
    assert sum(c["size"] for c in rep["per_cluster"].values()) == int((sel.cluster >= 0).sum())
    # a source whose budget covers its whole hard subset is taken without clustering (cluster -1)
    whole = [s for s, v in rep["per_source"].items() if v["budget"] == v["hard"]]
    unclustered = sel.selected & (sel.cluster < 0)
    assert set(scores.loc[unclustered, "source"]) <= set(whole)
    assert sum(c["selected"] for c in rep["per_cluster"].values()) == 40 - int(unclustered.sum())
    rows = scores.set_index("id").loc[sel.ids, "row_index"].to_numpy()
    assert (np.diff(rows) > 0).all()  # ids in input order
