"""Baselines to compare TEMP against (temp-method.md §3.5 and §4).

Ranking baselines (random, longest, middle-perplexity, difficulty, full-loss) order the pool and
take examples in that order while they fit (``take_in_order``): with ``select.budget`` the first B,
with ``select.budget_tokens`` every example that still fits. S2L and embedding cluster first; see
their docstrings for how a token budget is spent.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from reasonsift.config import SelectConfig
from reasonsift.selection.common import (Selection, balanced_cluster_pick, check_columns, column, finish,
                                         loss_matrix, resolve_budget, rng_for, small_sources_whole,
                                         take_in_order)
from reasonsift.selection.kmeans import kmeans

BASE_COLUMNS = ["id", "row_index", "source", "n_response_tokens"]


def _ranked(scores: pd.DataFrame, cfg: SelectConfig, order: np.ndarray, notes: list[str] | None = None,
            eligible_why: str = "") -> Selection:
    """Take ``order`` (preference order over the eligible rows) while it fits the budget."""
    budget = resolve_budget(scores, cfg)
    selected = np.zeros(len(scores), dtype=bool)
    selected[take_in_order(order, budget.cost, budget.amount)] = True
    return finish(scores, cfg, budget, selected, np.full(len(scores), -1), order, notes=notes,
                  eligible_why=eligible_why)


def _require_scored(scores: pd.DataFrame, name: str, method: str, hint: str) -> None:
    """Raise when ``name`` is NaN for every row: NaN -> 0 would silently rank in input order."""
    if not np.isfinite(scores[name].to_numpy(dtype=np.float64)).any():
        raise ValueError(f"select.method={method} ranks by {name}, but {name} is empty (NaN) for every row: "
                         f"{hint}")


def select_random(scores: pd.DataFrame, cfg: SelectConfig) -> Selection:
    """Uniformly random subset (one seeded permutation of the pool)."""
    check_columns(scores, BASE_COLUMNS, cfg.method)
    return _ranked(scores, cfg, rng_for(cfg.seed, "random").permutation(len(scores)))


def select_longest(scores: pd.DataFrame, cfg: SelectConfig) -> Selection:
    """Longest responses first, by ``response_chars`` (ties: input order)."""
    check_columns(scores, BASE_COLUMNS + ["response_chars"], cfg.method)
    return _ranked(scores, cfg, np.argsort(-column(scores, "response_chars"), kind="stable"))


def select_difficulty(scores: pd.DataFrame, cfg: SelectConfig) -> Selection:
    """Highest ``difficulty`` (100-token loss at θ_rnd) first: TEMP's difficulty signal alone."""
    check_columns(scores, BASE_COLUMNS + ["difficulty"], cfg.method)
    _require_scored(scores, "difficulty", cfg.method, "no Gaussian checkpoint was scored; score the pool again "
                    "into a new --run folder with score.num_isotropic >= 1")
    return _ranked(scores, cfg, np.argsort(-column(scores, "difficulty"), kind="stable"))


def middle_out(n: int) -> np.ndarray:
    """Positions 0..n-1 ordered by distance from the middle (n-1)/2, ties to the lower position.

    Its first B entries are exactly the official middle block [(n-B)//2, (n-B)//2 + B).
    """
    pos = np.arange(n)
    return np.lexsort((pos, np.abs(pos - (n - 1) / 2)))


def select_middle_perplexity(scores: pd.DataFrame, cfg: SelectConfig) -> Selection:
    """The middle of the pool ranked by perplexity exp(``base_loss_1000``) at θ₀.

    exp is monotone, so ranking by the loss itself gives the same order without overflow. Under a
    token budget the walk goes outward from the median, so the subset stays centred.
    """
    check_columns(scores, BASE_COLUMNS + ["base_loss_1000"], cfg.method)
    _require_scored(scores, "base_loss_1000", cfg.method, "the θ₀ losses are missing; score the pool again "
                    "into a new --run folder")
    rank = np.argsort(column(scores, "base_loss_1000"), kind="stable")  # ascending perplexity
    return _ranked(scores, cfg, rank[middle_out(len(rank))])


def select_full_loss(scores: pd.DataFrame, cfg: SelectConfig) -> Selection:
    """Highest whole-response loss at θ₀ (``full_loss``) first; rows without one are not eligible."""
    check_columns(scores, BASE_COLUMNS + ["full_loss"], cfg.method)
    full = scores["full_loss"].to_numpy(dtype=np.float64)
    ok = np.isfinite(full)
    if not ok.any():
        raise ValueError("select.method=full-loss needs whole-response losses, but full_loss is empty (NaN) "
                         "for every row: score the pool again into a new --run folder with score.full_loss=true")
    notes = [] if ok.all() else [f"{int((~ok).sum())} row(s) have no full_loss and were not eligible"]
    eligible = np.flatnonzero(ok)
    order = eligible[np.argsort(-full[eligible], kind="stable")]
    return _ranked(scores, cfg, order, notes, eligible_why=f"{len(eligible)} rows have a full_loss")


def select_s2l(scores: pd.DataFrame, cfg: SelectConfig) -> Selection:
    """S2L (temp-method.md §4.2) on the TEMP loss vectors ``loss_1000`` instead of proxy trajectories.

    Sources by ascending size: small sources whole, then each remaining source gets
    remaining // sources left (its shortfall rolls to the next). Inside a source: k-means with
    min(s2l_clusters, n) clusters; clusters with > 2 members, smallest first, get balanced quotas
    filled uniformly at random; the remainder is drawn at random from clusters of <= 2 members.
    Token budgets use the same rules with sizes, budgets and quotas in tokens.
    """
    check_columns(scores, BASE_COLUMNS + ["loss_1000"], cfg.method)
    budget = resolve_budget(scores, cfg)
    sources = scores["source"].astype(str).to_numpy()
    loss = loss_matrix(scores, "loss_1000")  # (n, m)
    sizes = {s: int(budget.cost[sources == s].sum()) for s in sorted(set(sources))}
    whole, left = small_sources_whole(sizes, budget.amount)
    selected = np.isin(sources, whole)
    cluster = np.full(len(scores), -1, dtype=np.int64)
    per_source = {s: {"budget": sizes[s]} for s in whole}
    rest = sorted((s for s in sizes if s not in whole), key=lambda s: (sizes[s], s))
    for i, src in enumerate(rest):
        n_s = left // (len(rest) - i)
        idx = np.flatnonzero(sources == src)
        rng = rng_for(cfg.seed, src)
        labels, _ = kmeans(loss[idx], cfg.s2l_clusters, cfg.seed, cfg.kmeans_iters)
        mask, _ = balanced_cluster_pick(labels, rng.permutation, budget.cost[idx], n_s, 3, rng)
        selected[idx[mask]] = True
        cluster[idx] = labels
        left -= int(budget.cost[idx[mask]].sum())
        per_source[src] = {"budget": n_s}
    fill_order = rng_for(cfg.seed, "s2l-fill").permutation(len(scores))
    return finish(scores, cfg, budget, selected, cluster, fill_order, per_source)


def _distance_to_centroid(x: np.ndarray, centroids: np.ndarray, labels: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """(n,) Euclidean distance of each row to its own centroid, chunked (x can be n x hidden_size)."""
    out = np.empty(len(x))
    for s in range(0, len(x), chunk):
        diff = np.asarray(x[s:s + chunk], dtype=np.float64) - centroids[labels[s:s + chunk]]
        out[s:s + chunk] = np.sqrt((diff * diff).sum(1))
    return out


def select_embedding(scores: pd.DataFrame, cfg: SelectConfig, embeddings: np.ndarray) -> Selection:
    """k-medoids-style embedding baseline: k-means with k = budget, keep the member nearest each centroid.

    embeddings: (n, d), one row per scores row. Medoids are taken among each cluster's own members
    (as the official code does), so two clusters can never yield the same example; an empty cluster
    yields none, and the fill pass then adds the examples nearest their centroid. Under a token
    budget k = round(budget_tokens / mean response tokens) and medoids are taken biggest cluster
    first while they fit.
    """
    check_columns(scores, BASE_COLUMNS, cfg.method)
    budget = resolve_budget(scores, cfg)
    emb = np.asarray(embeddings)
    if emb.ndim != 2 or len(emb) != len(scores):
        raise ValueError(f"embeddings must be (n_rows={len(scores)}, d), got shape {emb.shape}")
    k = budget.amount if budget.kind == "examples" else max(1, round(budget.amount / budget.cost.mean()))
    labels, centroids = kmeans(emb, k, cfg.seed, cfg.kmeans_iters)
    dist = _distance_to_centroid(emb, centroids, labels)
    by_cluster = np.lexsort((np.arange(len(emb)), dist, labels))  # grouped by cluster, nearest first
    first = np.r_[True, labels[by_cluster][1:] != labels[by_cluster][:-1]]
    medoids = by_cluster[first]  # one per non-empty cluster
    size = np.bincount(labels, minlength=len(centroids))
    medoids = medoids[np.argsort(-size[labels[medoids]], kind="stable")]
    selected = np.zeros(len(scores), dtype=bool)
    selected[take_in_order(medoids, budget.cost, budget.amount)] = True
    others = np.setdiff1d(np.arange(len(emb)), medoids)
    fill_order = np.r_[medoids, others[np.argsort(dist[others], kind="stable")]]
    return finish(scores, cfg, budget, selected, labels, fill_order, cluster_scope="all")
