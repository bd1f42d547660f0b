"""TEMP's rules one by one (temp-method.md §1.3, §1.5, §1.6) on hand-made score tables."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from reasonsift.config import SelectConfig
from reasonsift.selection.common import balanced_cluster_pick, rng_for, small_sources_whole
from reasonsift.selection.temp import (allocate_budget, allocate_sources, brittleness_key, difficulty_filter,
                                       group_difficulty, select_temp, select_within_source)

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
    # p = 0.25, 0.25, 0.5: a int(0.25*30)=7 (23 left); b int(0.25/0.75*23)=7 (16 left); c asks 15 > 12 rows:
    # whole (4 left). The 4 left over go to the largest group with room: b (11), not a.
    assert allocate_budget({"a": 10, "b": 11, "c": 12}, {"a": 0.0, "b": 0.0, "c": np.log(2)}, 30) == \
        {"a": 7, "b": 11, "c": 12}


def test_allocation_is_two_level():
    sources = np.array(["x1"] * 10 + ["x2"] * 30 + ["y1"] * 40)
    domains = np.array(["X"] * 40 + ["Y"] * 40)
    loss = np.tile([1.0, 2.0], (80, 1))  # every group has the same D_g
    alloc, diff, notes = allocate_sources(sources, domains, loss, np.ones(80, dtype=np.int64), 20)
    # domains split 10/10 first, then X's 10 splits 5/5 (a flat split would give ~7/7/6)
    assert alloc == {"x1": 5, "x2": 5, "y1": 10}
    assert np.isclose(diff["x1"], np.sqrt(2.0)) and notes == []


def test_a_wide_d_g_gap_is_noted_with_the_shares_it_gives():
    sources = np.array(["calm"] * 50 + ["wild"] * 50)
    domains = np.array(["X"] * 100)
    ones = np.ones(100, dtype=np.int64)
    near = np.r_[np.tile([1.0, 3.0], (50, 1)), np.tile([1.0, 3.5], (50, 1))]  # D_g 2.45 vs 2.96: no note
    assert allocate_sources(sources, domains, near, ones, 40)[2] == []
    far = np.r_[np.tile([1.0, 3.0], (50, 1)), np.tile([1.0, 6.0], (50, 1))]  # D_g 2.45 vs 5.48: 3.03 nats
    alloc, diff, notes = allocate_sources(sources, domains, far, ones, 40)
    # softmax(2.45, 5.48): calm p = 0.046 -> int(0.046*40) = 1, wild the other 39, from half each
    assert alloc == {"calm": 1, "wild": 39}
    assert len(notes) == 1 and "3.03-nat gap a 20.7x ratio" in notes[0]
    assert "'wild' gets 98% of the budget from 50% of the difficult subset and 'calm' 2% from 50%" in notes[0]
    assert "(mean 100-token loss 4.50 nats here)" in notes[0]


def test_quotas_roll_forward_smallest_first():
    sizes = {7: 2, 3: 3, 5: 10, 1: 20}
    labels = np.concatenate([np.full(n, c) for c, n in sizes.items()])
    mask, stats = balanced_cluster_pick(labels, lambda m: m, np.ones(len(labels), dtype=np.int64), 16, 2,
                                        np.random.default_rng(0))
    # quotas 16//4=4 -> 2 (short 2), 14//3=4 -> 3, 11//2=5 -> 5, 6//1=6 -> 6
    assert {c: int(mask[labels == c].sum()) for c in sizes} == {7: 2, 3: 3, 5: 5, 1: 6}
    assert stats == {"quota": 16, "small": 0, "rest": 0}
    first = np.flatnonzero(labels == 5)[:5]  # rank() = identity, so the first members are taken
    assert mask[first].all()


def test_singleton_leftovers_are_seeded_random():
    labels = np.array([0, 0, 1, 1, 2, 3, 4, 5, 6])  # two pairs, five singletons
    cost = np.ones(9, dtype=np.int64)
    picks = []
    for seed in range(6):
        mask, stats = balanced_cluster_pick(labels, lambda m: m, cost, 7, 2, np.random.default_rng(seed))
        assert stats == {"quota": 4, "small": 3, "rest": 0} and mask[:4].all()
        again, _ = balanced_cluster_pick(labels, lambda m: m, cost, 7, 2, np.random.default_rng(seed))
        assert np.array_equal(mask, again)
        picks.append(tuple(np.flatnonzero(mask[4:])))
    assert len(set(picks)) > 1  # which singletons depends on the seed


def test_token_quota_skips_to_the_next_that_fits_in_rank_order():
    """A token quota walks its cluster in rank order and skips what does not fit: no random picks."""
    labels = np.array([0, 0, 0, 1, 1, 1, 1])  # cluster 0 (3 members) first, then cluster 1 (4)
    cost = np.array([9, 3, 3, 8, 8, 8, 8])
    for seed in range(8):
        mask, stats = balanced_cluster_pick(labels, lambda m: m, cost, 20, 2, np.random.default_rng(seed))
        # cluster 0: quota 10 -> row 0 (9), 1 left, rows 1-2 skipped; cluster 1: quota 11 -> row 3, 3 left.
        # No singletons; the rest goes in ``rest`` order (default random) -> row 1 or row 2.
        assert mask[[0, 3]].all() and mask[[1, 2]].sum() == 1 and mask.sum() == 3
        assert stats == {"quota": 2, "small": 0, "rest": 1}
    # with a rest order (TEMP: brittleness over the source) the leftover goes by it, not at random
    for rest, pick in (([0, 1, 2, 3, 4, 5, 6], 1), ([6, 5, 4, 3, 2, 1, 0], 2)):
        for seed in range(8):
            mask, _ = balanced_cluster_pick(labels, lambda m: m, cost, 20, 2, np.random.default_rng(seed),
                                            rest=np.array(rest))
            assert np.flatnonzero(mask).tolist() == sorted([0, 3, pick])


def test_token_quota_is_filled_past_a_long_example():
    """Old behaviour stopped at the first example that did not fit and drew the rest at random."""
    labels = np.zeros(5, dtype=np.int64)
    cost = np.array([4, 9, 3, 3, 3])  # rank order = index order
    for seed in range(8):
        mask, stats = balanced_cluster_pick(labels, lambda m: m, cost, 10, 2, np.random.default_rng(seed))
        assert np.flatnonzero(mask).tolist() == [0, 2, 3] and stats["quota"] == 3


def brittle_blobs() -> tuple[np.ndarray, np.ndarray]:
    """Blob A: loss rises along Θ; blob B (far away): loss falls. Slopes differ within each."""
    steps = np.arange(8)
    slopes = np.linspace(0.1, 0.3, 10)
    a = 2.0 + slopes[:, None] * steps
    b = 30.0 - slopes[::-1, None] * steps
    return np.vstack([a, b]), slopes


def test_brittleness_ranking_and_sign_rule():
    loss, _ = brittle_blobs()
    mask, labels, _ = select_within_source(loss, budget=8, examples_per_cluster=4, seed=0)
    assert len(set(labels[:10].tolist())) == 1 and labels[0] != labels[10]  # K = 8 // 4 = 2 blobs
    # A (rising): the 4 steepest rises = rows 6..9; B (falling, sign flipped): steepest falls = rows 10..13
    assert np.flatnonzero(mask).tolist() == [6, 7, 8, 9, 10, 11, 12, 13]


def test_sign_rule_tie_ranks_by_first_minus_last():
    """Official rule: last − first only when mean first < mean last; a tie ranks by first − last."""
    loss = np.array([[1.0, 2.0], [3.0, 2.0], [2.0, 2.0], [2.0, 2.0]])  # mean first 2 == mean last 2
    labels = np.zeros(4, dtype=np.int64)
    assert brittleness_key(loss, labels).tolist() == [-1.0, 1.0, 0.0, 0.0]
    mask, _, _ = select_within_source(loss, budget=1)  # K = 1: one cluster, the tie
    assert np.flatnonzero(mask).tolist() == [1]
    rising = loss + np.array([0.0, 0.5])  # now mean first < mean last: last − first
    assert brittleness_key(rising, labels).tolist() == [1.5, -0.5, 0.5, 0.5]


def test_within_source_uses_its_seed():
    """Without an explicit rng, the seed drives both k-means and the singleton draws."""
    loss = np.random.default_rng(0).normal(size=(40, 3))
    runs = {seed: select_within_source(loss, budget=12, seed=seed) for seed in range(6)}
    again = select_within_source(loss, budget=12, seed=3)
    assert np.array_equal(again[0], runs[3][0]) and np.array_equal(again[1], runs[3][1])
    assert len({tuple(r[1].tolist()) for r in runs.values()}) > 1  # k-means initialisation
    assert len({tuple(np.flatnonzero(r[0]).tolist()) for r in runs.values()}) > 1
    # singleton draws alone: a pair and 10 far-apart points are 11 clusters whatever the seed (K = 11);
    # the pair's quota takes it, then 9 of the 10 singletons are drawn at random
    spread = np.r_[np.zeros((2, 2)), 100.0 * np.arange(1, 11)[:, None] * np.ones((10, 2))]
    picks = set()
    for s in range(8):
        mask, labels, _ = select_within_source(spread, budget=11, seed=s, examples_per_cluster=1)
        assert len(set(labels.tolist())) == 11 and mask[:2].all() and mask.sum() == 11
        picks.add(int(np.flatnonzero(~mask)[0]))
    assert len(picks) > 1


def test_token_leftover_in_a_source_goes_by_brittleness():
    """Slack left after the quotas (none fits its own cluster's next) goes to the most brittle that fits."""
    a = np.array([[10.0, 10.0, 13.0], [10.0, 10.0, 12.0], [10.0, 10.0, 11.0]])  # brittleness 3, 2, 1
    b = np.array([[1.0, 1.0, 1.4], [1.0, 1.0, 1.3], [1.0, 1.0, 1.2], [1.0, 1.0, 1.1]])
    loss, cost = np.vstack([a, b]), np.array([9, 3, 3, 8, 8, 8, 8])
    for seed in range(8):
        # K = int(20 / mean cost 6.7) // 1 = 2 (a, b). a (smaller) quota 10: row 0 (9), rows 1-2 skipped;
        # b quota 11: row 3 (8), 3 left. No singletons; the 3 go to row 1 (brittleness 2) rather than row 2.
        mask, labels, picks = select_within_source(loss, 20, cost, examples_per_cluster=1, seed=seed)
        assert len(set(labels[:3].tolist())) == 1 and labels[0] != labels[3]
        assert np.flatnonzero(mask).tolist() == [0, 1, 3] and picks == {"quota": 2, "small": 0, "rest": 1}


def test_within_source_shortcuts():
    loss, _ = brittle_blobs()
    all_mask, all_labels, _ = select_within_source(loss, budget=20)
    assert all_mask.all() and (all_labels == -1).all()
    none_mask, _, _ = select_within_source(loss, budget=0)
    assert not none_mask.any()


@pytest.mark.parametrize("tokens", [5_000, 40_000])
def test_temp_token_budget_is_exact(scores, tokens):
    cfg = SelectConfig(budget_tokens=tokens, seed=1)
    sel = select_temp(scores, cfg)
    cost = scores["n_response_tokens"].to_numpy()
    hard = difficulty_filter(scores, tokens, 1, cost=cost)
    used = int(cost[sel.selected].sum())
    assert used <= tokens and sel.report["selected_tokens"] == used
    assert not (sel.selected & ~hard).any()
    unselected = cost[hard & ~sel.selected]
    assert unselected.min() > tokens - used  # nothing eligible fits in the slack
    # every source's overrun is reported, and only the final fill (pooled slack) can cause one
    sources = scores["source"].to_numpy()
    fill = [n for n in sel.report["notes"] if n.startswith("greedy fill added")]
    fill_tokens = int(re.search(r"\((\d+) tokens\)", fill[0]).group(1)) if fill else 0
    total_over = 0
    for src, v in sel.report["per_source"].items():
        used_s = int(cost[sel.selected & (sources == src)].sum())
        assert v["selected_tokens"] == used_s and v["overrun"] == max(0, used_s - v["budget"])
        total_over += v["overrun"]
        assert sum((v["picks"] or {}).values()) <= v["selected"]  # None: source taken whole
    assert total_over <= fill_tokens
    assert (total_over > 0) == any("over per-source budgets" in n for n in sel.report["notes"])


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


# ---------------------------------------------------------------------------------------------------
# One hand-made pool, the exact TEMP selection worked out by hand, for both budget kinds.
#
# Source "alg" (domain math), 12 hard rows + 6 easy ones:
#   P = alg-p0, alg-p1: loss_1000 ≈ (50, 50, 51|52), rising.          300 tokens each
#   Q = alg-q0..q9:     loss_1000 = (3, 2.5, 3 − 0.1(j+1)), *falling*: mean first 3 > mean last, so
#       the sign rule ranks Q by first − last = 0.1(j+1): q9, q8, ..., q0.   100 tokens each, but q5: 400
#   every hard row's loss_100 = (1.5, 1.7, 2.0)  ->  D_math = sqrt((2.0 − 1.5)·2.0) = 1.0
# Source "py" (domain code), 21 hard rows + 6 easy ones, 150 tokens each:
#   P2 = py-p0, py-p1 (≈ 100, 100, 101|102); Q2 = py-q0..q15 (≈ 5, 6, 7); three far-apart singletons
#   py-s0..s2; every hard row's loss_100 = (2.7, 3.0, 3.6)  ->  D_code = sqrt(0.9·3.6) = 1.8
# Easy rows have difficulty 1 (hard: 5) and loss_100 (9, 9, 0), which would change D_g if they were
# counted. The loss_100 rows are identical within a source, so clustering or ranking on loss_100
# instead of loss_1000 would change the result, as would D_g from loss_1000 (D_math would be 0).
# softmax(1.0, 1.8): p_math = 1 / (1 + e^0.8) = 0.3100.
# ---------------------------------------------------------------------------------------------------

def hand_pool() -> pd.DataFrame:
    rows = []

    def add(rid, src, dom, hard, l1000, l100, tokens):
        rows.append({"id": rid, "source": src, "domain": dom, "difficulty": 5.0 if hard else 1.0,
                     "loss_1000": list(map(float, l1000)), "loss_100": list(map(float, l100)),
                     "n_response_tokens": tokens})

    for j in range(2):
        add(f"alg-p{j}", "alg", "math", True, (50, 50, 51 + j), (1.5, 1.7, 2.0), 300)
    for j in range(10):
        add(f"alg-q{j}", "alg", "math", True, (3, 2.5, 3 - 0.1 * (j + 1)), (1.5, 1.7, 2.0), 400 if j == 5 else 100)
    for j in range(6):
        add(f"alg-e{j}", "alg", "math", False, (3, 3, 3 + j), (9, 9, 0), 100)
    for j in range(2):
        add(f"py-p{j}", "py", "code", True, (100, 100, 101 + j), (2.7, 3.0, 3.6), 150)
    for j in range(16):
        add(f"py-q{j}", "py", "code", True, (5, 6, 7 + 0.01 * j), (2.7, 3.0, 3.6), 150)
    for j, far in enumerate([(200, 0, 0), (0, 200, 0), (0, 0, 200)]):
        add(f"py-s{j}", "py", "code", True, far, (2.7, 3.0, 3.6), 150)
    for j in range(6):
        add(f"py-e{j}", "py", "code", False, (5, 5, 5 + j), (9, 9, 0), 150)
    df = pd.DataFrame(rows)
    df["row_index"] = np.arange(len(df))
    return df.sample(frac=1.0, random_state=3).reset_index(drop=True)  # table order != input order


def drawn_singletons(df: pd.DataFrame, seed: int, k: int) -> list[str]:
    """The k singletons TEMP draws in "py": the first k of ``rng_for(seed, "py")``'s permutation of
    the singletons' positions among py's hard rows (table order) — the only random step here."""
    hard_py = df[(df["source"] == "py") & (df["difficulty"] > 3)]["id"].tolist()
    singles = np.array([i for i, rid in enumerate(hard_py) if rid.startswith("py-s")])
    return [hard_py[i] for i in rng_for(seed, "py").permutation(singles)[:k]]


def in_input_order(df: pd.DataFrame, ids: set[str]) -> list[str]:
    return df[df["id"].isin(ids)].sort_values("row_index")["id"].tolist()


def check_hand_clusters(df: pd.DataFrame, sel) -> None:
    """Precondition: k-means found the blobs (alg: P, Q; py: P2, Q2 and the three singletons)."""
    for src, blobs in (("alg", ["alg-p", "alg-q"]), ("py", ["py-p", "py-q", "py-s0", "py-s1", "py-s2"])):
        labels = {b: set(sel.cluster[df["id"].str.startswith(b).to_numpy()].tolist()) for b in blobs}
        assert all(len(v) == 1 for v in labels.values()), labels
        assert len({next(iter(v)) for v in labels.values()}) == len(blobs), labels


def test_hand_pool_example_budget():
    df = hand_pool()
    seed = 5
    sel = select_temp(df, SelectConfig(budget=28, seed=seed))
    check_hand_clusters(df, sel)
    # Filter: 28 // 2 = 14 < 18 (alg) and < 27 (py), so both are clustered on difficulty: hard rows kept.
    # Domains (hard sizes 12, 21), smallest first: math int(0.3100·28) = 8; code int(1.0·20) = 20.
    # alg: K = 8 // 4 = 2 (P, Q). P quota 8 // 2 = 4 takes both (2 short, rolled on);
    #      Q quota 6: the six steepest falls q9..q4.
    # py:  K = 20 // 4 = 5. P2 quota 20 // 2 = 10 -> 2; Q2 quota 18 -> all 16; 2 left: 2 of 3 singletons.
    expected = {"alg-p0", "alg-p1"} | {f"alg-q{j}" for j in range(4, 10)} | {"py-p0", "py-p1"} \
        | {f"py-q{j}" for j in range(16)} | set(drawn_singletons(df, seed, 2))
    assert sel.ids == in_input_order(df, expected)
    per = sel.report["per_source"]
    assert (per["alg"]["hard"], per["alg"]["budget"], per["py"]["hard"], per["py"]["budget"]) == (12, 8, 21, 20)
    assert per["alg"]["picks"] == {"quota": 8, "small": 0, "rest": 0}
    assert per["py"]["picks"] == {"quota": 18, "small": 2, "rest": 0}
    assert np.isclose(per["alg"]["group_difficulty"], 1.0) and np.isclose(per["py"]["group_difficulty"], 1.8)
    assert per["alg"]["overrun"] == per["py"]["overrun"] == 0


def test_hand_pool_token_budget():
    df = hand_pool()
    seed = 5
    sel = select_temp(df, SelectConfig(budget_tokens=4400, seed=seed))
    check_hand_clusters(df, sel)
    # Filter: alg has 2,500 tokens, py 4,050; both > 4400 // 2, so both are clustered: hard rows kept.
    # Domains (hard tokens 1,900 and 3,150): math int(0.3100·4400) = 1364; code int(1.0·3036) = 3036.
    # alg: K = int(1364 / (1900/12)) // 4 = 8 // 4 = 2. P quota 682 -> both (600). Q quota 764, by rank:
    #      q9 q8 q7 q6 (400, 364 left); q5 (400) does not fit: skipped; q4 q3 q2 (64 left); q1 q0 don't fit.
    # py:  K = int(3036 / 150) // 4 = 5. P2 quota 1518 -> 300; Q2 quota 2736 -> all 16 (2400); 336 left:
    #      two singletons (300), 36 left.
    # Used 1300 + 3000 = 4300 of 4400. The 100 slack fits neither source alone (64, 36), so the final
    # fill spends it, best brittleness first among what fits: alg-q1 (100). alg ends 36 over its budget.
    expected = {"alg-p0", "alg-p1"} | {f"alg-q{j}" for j in (9, 8, 7, 6, 4, 3, 2, 1)} | {"py-p0", "py-p1"} \
        | {f"py-q{j}" for j in range(16)} | set(drawn_singletons(df, seed, 2))
    assert sel.ids == in_input_order(df, expected)
    rep = sel.report
    assert rep["selected_tokens"] == 4400
    per = rep["per_source"]
    assert (per["alg"]["budget"], per["py"]["budget"]) == (1364, 3036)
    assert per["alg"]["picks"] == {"quota": 9, "small": 0, "rest": 0}
    assert per["py"]["picks"] == {"quota": 18, "small": 2, "rest": 0}
    assert (per["alg"]["selected_tokens"], per["alg"]["overrun"]) == (1400, 36)
    assert (per["py"]["selected_tokens"], per["py"]["overrun"]) == (3000, 0)
    assert any("greedy fill added 1 example(s) (100 tokens)" in n for n in rep["notes"])
    assert any("over per-source budgets" in n and "alg +36 tokens" in n for n in rep["notes"])


def test_hand_pool_seed_changes_only_the_singleton_draws():
    df = hand_pool()
    first: dict[str, tuple] = {}
    draws = set()
    for seed in range(8):
        for kind, cfg in (("examples", SelectConfig(budget=28, seed=seed)),
                          ("tokens", SelectConfig(budget_tokens=4400, seed=seed))):
            sel = select_temp(df, cfg)
            singles = {i for i in sel.ids if i.startswith("py-s")}
            assert singles == set(drawn_singletons(df, seed, 2))
            rep = {k: v for k, v in sel.report.items() if k not in ("seed", "per_source", "per_cluster")}
            # k-means numbers its clusters differently per seed, but the partition is the same
            partition = {frozenset(df.loc[(sel.cluster == c) & (df["source"] == s).to_numpy(), "id"])
                         for s in ("alg", "py") for c in set(sel.cluster.tolist())} - {frozenset()}
            unseeded = (set(sel.ids) - singles, sel.report["per_source"]["alg"], json.dumps(rep, sort_keys=True),
                        partition)
            assert first.setdefault(kind, unseeded) == unseeded  # everything else is the same for every seed
            draws.add(frozenset(singles))
    assert len(draws) > 1  # and the draws do depend on the seed
