"""Baselines and the ``select`` entry point: counts, exact budgets, determinism, seeds, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from reasonsift.config import SelectConfig
from reasonsift.selection.baselines import middle_out
from reasonsift.selection.kmeans import kmeans
from reasonsift.selection.select import METHODS, select

from .conftest import make_scores


def embeddings_for(n: int) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(n, 12))


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_meets_example_budget(scores, method):
    sel = select(scores, SelectConfig(method=method, budget=37), embeddings_for(len(scores)))
    assert sel.report["n_selected"] == 37 == len(sel.ids) == int(sel.selected.sum())
    assert len(set(sel.ids)) == 37
    json.dumps(sel.report)  # plain Python types only


@pytest.mark.parametrize("method", sorted(set(METHODS) - {"temp"}))
def test_every_baseline_meets_token_budget(scores, method):
    budget = 25_000
    sel = select(scores, SelectConfig(method=method, budget_tokens=budget), embeddings_for(len(scores)))
    cost = scores["n_response_tokens"].to_numpy()
    used = int(cost[sel.selected].sum())
    assert used <= budget and used == sel.report["selected_tokens"]
    assert cost[~sel.selected].min() > budget - used  # no unselected example fits in the slack


@pytest.mark.parametrize("method", sorted(METHODS))
def test_deterministic(scores, method):
    emb = embeddings_for(len(scores))
    a = select(scores, SelectConfig(method=method, budget=30, seed=3), emb)
    b = select(scores, SelectConfig(method=method, budget=30, seed=3), emb)
    assert a.ids == b.ids and np.array_equal(a.cluster, b.cluster) and a.report == b.report


def test_seed_changes_only_seeded_parts(scores):
    def ids(method: str, seed: int) -> list[str]:
        return select(scores, SelectConfig(method=method, budget=30, seed=seed)).ids

    for method in ("random", "s2l"):
        assert ids(method, 1) != ids(method, 2)
    for method in ("longest", "difficulty", "middle-perplexity", "full-loss"):
        assert ids(method, 1) == ids(method, 2)


def test_ranking_baselines_take_the_top(scores):
    for method, col in (("longest", "response_chars"), ("difficulty", "difficulty"), ("full-loss", "full_loss")):
        sel = select(scores, SelectConfig(method=method, budget=10))
        assert set(sel.ids) == set(scores.nlargest(10, col)["id"])


def test_middle_out_matches_official_middle_block():
    for n in range(1, 25):
        for b in range(1, n + 1):
            start = (n - b) // 2
            assert sorted(middle_out(n)[:b].tolist()) == list(range(start, start + b))


def test_middle_perplexity_takes_the_middle(scores):
    sel = select(scores, SelectConfig(method="middle-perplexity", budget=50))
    ranked = scores.sort_values("base_loss_1000", kind="stable")["id"].tolist()
    start = (len(ranked) - 50) // 2
    assert set(sel.ids) == set(ranked[start:start + 50])


def test_full_loss_needs_the_column_scored(scores):
    df = scores.copy()
    df["full_loss"] = np.nan
    with pytest.raises(ValueError, match="score.full_loss=true"):
        select(df, SelectConfig(method="full-loss", budget=5))
    df.loc[:9, "full_loss"] = np.arange(10.0)
    sel = select(df, SelectConfig(method="full-loss", budget=20))
    assert sel.report["n_selected"] == 10 and set(sel.ids) == set(df.loc[:9, "id"])
    assert any("not eligible" in n for n in sel.report["notes"])
    assert any("all of it was taken" in n for n in sel.report["notes"])


def test_s2l_per_source_equal_budgets():
    df = make_scores({"a": 5, "b": 100, "c": 100})
    sel = select(df, SelectConfig(method="s2l", budget=45))
    per = sel.report["per_source"]
    # a: 5 <= 45 // 3 -> whole; then 40 split 20 / 20
    assert {s: per[s]["selected"] for s in per} == {"a": 5, "b": 20, "c": 20}
    assert (sel.cluster[(df["source"] == "a").to_numpy()] == -1).all()


def test_embedding_picks_the_medoid_of_every_cluster():
    df = make_scores({"a": 60})
    emb = np.random.default_rng(0).normal(size=(60, 4))
    sel = select(df, SelectConfig(method="embedding", budget=6, seed=2), emb)
    labels, centroids = kmeans(emb, 6, seed=2)
    assert np.array_equal(sel.cluster, labels)
    dist = np.linalg.norm(emb - centroids[labels], axis=1)
    medoids = {int(np.flatnonzero(labels == c)[np.argmin(dist[labels == c])]) for c in np.unique(labels)}
    assert set(np.flatnonzero(sel.selected).tolist()) == medoids
    every = select(df, SelectConfig(method="embedding", budget=100), emb)  # k clamped to n
    assert every.report["n_selected"] == 60


def test_budget_and_argument_errors(scores):
    with pytest.raises(ValueError, match="exactly one"):
        select(scores, SelectConfig(method="random"))
    with pytest.raises(ValueError, match="exactly one"):
        select(scores, SelectConfig(method="random", budget=3, budget_tokens=100))
    with pytest.raises(ValueError, match="embeddings"):
        select(scores, SelectConfig(method="embedding", budget=3))
    with pytest.raises(ValueError, match="loss_1000"):
        select(scores.drop(columns=["loss_1000"]), SelectConfig(method="s2l", budget=3))


def test_budget_larger_than_pool_takes_all_with_note(scores):
    sel = select(scores, SelectConfig(method="random", budget=10_000))
    assert sel.report["n_selected"] == len(scores)
    assert any("all of it was taken" in n for n in sel.report["notes"])


def test_unscored_ranking_columns_are_refused_not_read_as_zero(scores):
    """All-NaN difficulty (no Gaussian checkpoint scored) must not silently rank in input order."""
    df = scores.copy()
    df["difficulty"] = np.nan
    with pytest.raises(ValueError, match="difficulty is empty.*num_isotropic"):
        select(df, SelectConfig(method="difficulty", budget=5))
    temp = select(df, SelectConfig(method="temp", budget=20))  # TEMP runs, without the filter, and says so
    assert any("difficulty is empty" in n for n in temp.report["notes"])
    assert all(v["hard"] == v["pool"] for v in temp.report["per_source"].values())
    df = scores.copy()
    df["base_loss_1000"] = np.nan
    with pytest.raises(ValueError, match="base_loss_1000 is empty"):
        select(df, SelectConfig(method="middle-perplexity", budget=5))
    df.loc[:4, "base_loss_1000"] = 1.0  # partly scored: NaN -> 0 as in the official code, no error
    assert select(df, SelectConfig(method="middle-perplexity", budget=5)).report["n_selected"] == 5


def test_a_budget_larger_than_the_pool_warns(scores, caplog):
    import logging

    from reasonsift.config import SelectConfig
    from reasonsift.selection.select import select

    with caplog.at_level(logging.WARNING):
        selection = select(scores, SelectConfig(method="random", budget=1000))
    assert len(selection.ids) == len(scores)
    assert "budget (1000 examples) is not smaller than the eligible set (300 examples" in caplog.text
    assert "the subset is the whole eligible pool" in caplog.text
