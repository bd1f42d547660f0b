"""TEMP selection (temp-method.md §1.3, §1.5, §1.6): difficulty filter, softmax budgets, brittle picks.

1. ``difficulty_filter``: per source, k-means (k=2) on the 100-token loss at θ_rnd keeps the
   high-loss cluster; small sources are kept whole. Unlike the official code, nothing else is added
   (its difficulty path falls through into the middle-perplexity baseline and adds 1,000 more rows).
2. ``allocate_sources``: budget over domains, then over sources within a domain, by softmax (T=1)
   of ``group_difficulty`` (100-token losses) with the official capacity adjustment
   (``allocate_budget``).
3. ``select_within_source``: k-means on the raw 8-dim 1000-token loss vectors, balanced quotas
   over clusters (>= 2 members) smallest first, top brittleness inside each cluster (official sign
   rule, ``brittleness_key``), leftovers at random from singletons.

Token budgets (``select.budget_tokens``): the result is ≤ T tokens and nothing else fits (no
unselected example of the difficult subset is short enough for the slack). Every size and budget
above is counted in response tokens: the filter's "small source" test and the softmax allocation
compare token totals, and K_s uses the source's token budget divided by its mean example length (an
expected example count). Inside a source, each cluster's token quota is filled in brittleness order,
skipping an example that does not fit for the next one that does; the unused part of a quota rolls
on to the next cluster; what is left after the largest cluster goes to random singletons (as in the
paper), then to the source's other unselected examples by brittleness. Only then, when the slack
left in every source is too small for that source's next example but their sum is not, does a final
pass over the difficult subset (by brittleness) spend it; the tokens it adds beyond a source's budget
are reported as that source's ``overrun``.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd

from reasonsift.config import SelectConfig
from reasonsift.selection.common import (Selection, balanced_cluster_pick, check_columns, column, finish,
                                         loss_matrix, resolve_budget, rng_for, small_sources_whole)
from reasonsift.selection.kmeans import kmeans

TEMP_COLUMNS = ["id", "row_index", "source", "domain", "n_response_tokens", "difficulty", "loss_100", "loss_1000"]
# D_g gap (nats) between sources from which select notes the budget split: e^2 ≈ 7.4x budget share ratio
BUDGET_SPREAD_NOTE = 2.0


def difficulty_filter(scores: pd.DataFrame, budget: int, seed: int, iters: int = 20,
                      cost: np.ndarray | None = None) -> np.ndarray:
    """Stage A′: (n,) bool mask of the difficult subset V^d (temp-method.md §1.3).

    Sources by ascending size: a source no bigger than ``budget // sources not yet taken whole`` is
    taken whole (S2L's rule, remaining budget decremented as in the official loop); every other source
    is split by k-means (k=2, seeded) on ``difficulty`` and all members of the cluster with the higher
    mean are kept. Sizes are counted in ``cost`` units (ones, or response tokens for token budgets).
    """
    sources = scores["source"].astype(str).to_numpy()
    difficulty = column(scores, "difficulty")
    cost = np.ones(len(scores), dtype=np.int64) if cost is None else cost
    names = sorted(set(sources))
    whole, _ = small_sources_whole({s: int(cost[sources == s].sum()) for s in names}, budget)
    mask = np.zeros(len(scores), dtype=bool)
    for src in names:
        idx = np.flatnonzero(sources == src)
        if src in whole:
            mask[idx] = True
            continue
        labels, _ = kmeans(difficulty[idx], 2, seed, iters)  # (n_s,)
        present = np.unique(labels)  # one cluster only when every value is the same
        means = [difficulty[idx][labels == c].mean() for c in present]
        mask[idx[labels == present[int(np.argmax(means))]]] = True
    return mask


def group_difficulty(loss_100: np.ndarray) -> float:
    """D_g = sqrt((mean L100(θ_last) − mean L100(θ_first)) · mean L100(θ_last)) over a group's rows.

    loss_100: (n_g, m) 100-token losses at the m directional checkpoints. When the group's loss does
    not rise along Θ the product is negative and the official code gets NaN, which poisons the whole
    softmax; we clip it at 0 instead, i.e. such a group counts as not brittle at all (the bottom of
    the scale) and still gets its exp(0) share.
    """
    first, last = float(loss_100[:, 0].mean()), float(loss_100[:, -1].mean())
    return float(np.sqrt(max(0.0, (last - first) * last)))


def allocate_budget(sizes: dict[str, int], scores: dict[str, float], budget: int) -> dict[str, int]:
    """Softmax (T=1) of ``scores`` split ``budget`` over groups, capped by ``sizes`` (temp-method.md §1.5).

    Official capacity adjustment: initial n_g = int(p_g·B); groups smallest first (ties by name); a
    group with fewer rows than n_g is taken whole; otherwise it gets int(p_g / Σ p_remaining ·
    remaining budget), capped at its size; leftover goes to the largest groups that still have room.
    The total is min(budget, Σ sizes).
    """
    names = sorted(sizes)
    d = np.array([scores[n] for n in names], dtype=np.float64)
    p = np.exp(d - d.max())  # subtracting the max changes nothing but avoids overflow
    p = dict(zip(names, (p / p.sum()).tolist()))
    requested = {n: int(p[n] * budget) for n in names}
    order = sorted(names, key=lambda n: (sizes[n], n))
    out: dict[str, int] = {}
    left, open_p = int(budget), dict(p)
    for n in order:
        if sizes[n] < requested[n]:
            out[n] = int(sizes[n])
        else:
            out[n] = min(int(open_p[n] / sum(open_p.values()) * left), int(sizes[n]))
        left -= out[n]
        del open_p[n]
    for n in reversed(order):
        if left <= 0:
            break
        extra = min(left, int(sizes[n]) - out[n])
        out[n] += extra
        left -= extra
    return out


def allocate_sources(sources: np.ndarray, domains: np.ndarray, loss_100: np.ndarray, cost: np.ndarray,
                     budget: int) -> tuple[dict[str, int], dict[str, float], list[str]]:
    """Two-level allocation: domains first, then sources within each domain (rows = the hard subset).

    Returns (budget per source, D_g per source, notes). A source listed under several domains is
    placed in its most common one (noted), since budgets are per source.
    """
    notes = []
    src_domain = {}
    for src in sorted(set(sources)):
        counts = Counter(domains[sources == src].tolist())
        src_domain[src] = max(sorted(counts), key=counts.__getitem__)
        if len(counts) > 1:
            notes.append(f"source {src!r} spans domains {sorted(counts)}; allocated within {src_domain[src]!r}")
    row_domain = np.array([src_domain[s] for s in sources])
    doms = sorted(set(src_domain.values()))
    dom_budget = allocate_budget({d: int(cost[row_domain == d].sum()) for d in doms},
                                 {d: group_difficulty(loss_100[row_domain == d]) for d in doms}, budget)
    alloc, difficulty = {}, {}
    for dom in doms:
        srcs = [s for s in src_domain if src_domain[s] == dom]
        difficulty.update({s: group_difficulty(loss_100[sources == s]) for s in srcs})
        alloc.update(allocate_budget({s: int(cost[sources == s].sum()) for s in srcs},
                                     {s: difficulty[s] for s in srcs}, dom_budget[dom]))
    notes += budget_spread_notes(difficulty, alloc, {s: int(cost[sources == s].sum()) for s in difficulty},
                                 float(loss_100[:, -1].mean()))
    return alloc, difficulty, notes


def budget_spread_notes(difficulty: dict[str, float], alloc: dict[str, int], hard: dict[str, int],
                        last_loss: float) -> list[str]:
    """A note when the T = 1 softmax over D_g makes one source's budget many times another's.

    D_g is in nats and grows with the last directional checkpoint's loss, so the softmax's sharpness
    depends on the loss scale the radii reach, not only on how sources differ: on the synthetic world
    (radii to 2.5·‖θ_f − θ₀‖, last-checkpoint loss ~11 nats) D_g spread 2.1 nats and two of four sources
    took 350 of 400 rows. The split is still the method's; the note makes it visible.
    """
    if len(difficulty) < 2:
        return []
    lo, hi = min(difficulty, key=difficulty.__getitem__), max(difficulty, key=difficulty.__getitem__)
    qlo, qhi = f"'{lo}'", f"'{hi}'"  # str(): the keys may be numpy strings, whose repr is np.str_(...)
    spread = difficulty[hi] - difficulty[lo]
    if spread < BUDGET_SPREAD_NOTE:
        return []
    total, total_hard = max(sum(alloc.values()), 1), max(sum(hard.values()), 1)
    return [f"source budget: D_g runs from {difficulty[lo]:.2f} ({qlo}) to {difficulty[hi]:.2f} ({qhi}); a "
            f"softmax at T = 1 makes that {spread:.2f}-nat gap a {np.exp(spread):.1f}x ratio of budget shares, so "
            f"{qhi} gets {alloc.get(hi, 0) / total:.0%} of the budget from {hard.get(hi, 0) / total_hard:.0%} of the "
            f"difficult subset and {qlo} {alloc.get(lo, 0) / total:.0%} from {hard.get(lo, 0) / total_hard:.0%}. D_g "
            f"scales with the last directional checkpoint's loss (mean 100-token loss {last_loss:.2f} nats here), "
            "so this split depends on how far score.final_radius takes the model"]


def brittleness_key(loss_1000: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(n,) the within-cluster ranking key: brittleness b = L(θ_last) − L(θ_first), sign per cluster.

    Official rule (``faiss_kmeans_selection``, "learnability"): a cluster whose mean first-checkpoint
    loss is *below* its mean last-checkpoint loss ranks by last − first; any other cluster (mean
    first ≥ mean last, ties included) ranks by first − last. Higher key = taken first.
    """
    first, last = loss_1000[:, 0], loss_1000[:, -1]
    key = last - first
    for c in np.unique(labels):
        members = labels == c
        if not first[members].mean() < last[members].mean():
            key[members] = -key[members]
    return key


def select_within_source(loss_1000: np.ndarray, budget: int, cost: np.ndarray | None = None,
                         examples_per_cluster: int = 4, seed: int = 42, iters: int = 20,
                         rng: np.random.Generator | None = None
                         ) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Stage D for one source: (mask (n,) bool, cluster labels (n,) or -1 when not clustered, picks).

    loss_1000: (n, m) raw 1000-token loss vectors. K = max(1, n_expected // examples_per_cluster)
    clusters (n_expected = the budget in examples); quotas as in ``balanced_cluster_pick`` over
    clusters with >= 2 members, each filled by ``brittleness_key`` (temp-method.md §1.6); leftovers
    at random from singletons (``rng``, or one seeded by ``seed``), then — token budgets only — the
    source's other unselected examples by the same key. picks: examples taken per stage
    ("quota", "small", "rest").
    """
    n = len(loss_1000)
    cost = np.ones(n, dtype=np.int64) if cost is None else cost
    rng = np.random.default_rng(seed) if rng is None else rng
    if budget <= 0 or budget >= int(cost.sum()):  # official shortcuts: take none / take all
        return np.full(n, budget > 0), np.full(n, -1, dtype=np.int64), {}
    n_expected = budget if (cost == 1).all() else budget / float(cost.mean())
    labels, _ = kmeans(loss_1000, max(1, int(n_expected) // examples_per_cluster), seed, iters)
    key = brittleness_key(loss_1000, labels)

    def rank(members: np.ndarray) -> np.ndarray:
        return members[np.argsort(-key[members], kind="stable")]

    mask, picks = balanced_cluster_pick(labels, rank, cost, budget, 2, rng, rest=rank(np.arange(n)))
    return mask, labels, picks


def select_temp(scores: pd.DataFrame, cfg: SelectConfig) -> Selection:
    """TEMP: difficulty filter, softmax source budgets, clustered brittle picks (temp-method.md §1)."""
    check_columns(scores, TEMP_COLUMNS, cfg.method)
    budget = resolve_budget(scores, cfg)
    sources = scores["source"].astype(str).to_numpy()
    domains = scores["domain"].astype(str).to_numpy()
    loss_100, loss_1000 = loss_matrix(scores, "loss_100"), loss_matrix(scores, "loss_1000")  # (n, m)
    notes = []
    if not np.isfinite(scores["difficulty"].to_numpy(dtype=np.float64)).any():
        # NaN -> 0 would make every row equally difficult and the filter keep everything silently
        notes.append("difficulty is empty (NaN) for every row, i.e. no Gaussian checkpoint was scored "
                     "(score.num_isotropic=0?): the difficulty filter was skipped and every example is eligible")
        hard = np.ones(len(scores), dtype=bool)
    else:
        hard = difficulty_filter(scores, budget.amount, cfg.seed, cfg.kmeans_iters, budget.cost)
    hard_idx = np.flatnonzero(hard)
    means = loss_100[hard_idx].mean(0)
    if int(np.argmax(means)) != len(means) - 1:
        # the official code asserts this; we only warn, the allocation is still defined
        notes.append("the last directional checkpoint does not have the highest mean 100-token loss "
                     f"(means {np.round(means, 4).tolist()}): is the direction / radius right?")
    selected = np.zeros(len(scores), dtype=bool)
    cluster = np.full(len(scores), -1, dtype=np.int64)
    key = loss_1000[:, -1] - loss_1000[:, 0]  # brittleness; sign-adjusted per cluster below
    alloc, difficulty, picks = {}, {}, {}
    if int(budget.cost[hard_idx].sum()) > budget.amount:
        alloc, difficulty, more = allocate_sources(sources[hard_idx], domains[hard_idx], loss_100[hard_idx],
                                                   budget.cost[hard_idx], budget.amount)
        notes += more
        for src, n_s in alloc.items():
            idx = hard_idx[sources[hard_idx] == src]
            mask, labels, picks[src] = select_within_source(loss_1000[idx], n_s, budget.cost[idx],
                                                            cfg.examples_per_cluster, cfg.seed,
                                                            cfg.kmeans_iters, rng_for(cfg.seed, src))
            selected[idx[mask]] = True
            cluster[idx] = labels
            if (labels >= 0).any():
                key[idx] = brittleness_key(loss_1000[idx], labels)
    else:  # the difficult subset fits in the budget: take it all (finish() notes the shortfall)
        selected[hard_idx] = True
        alloc = {s: int(budget.cost[hard_idx[sources[hard_idx] == s]].sum()) for s in set(sources[hard_idx])}
    # the final fill (token budgets) spends slack no single source could use, best-ranked first
    fill_order = hard_idx[np.argsort(-key[hard_idx], kind="stable")]
    per_source = _per_source(scores, sources, hard, alloc, difficulty, picks)
    return finish(scores, cfg, budget, selected, cluster, fill_order, per_source, notes,
                  eligible_why=f"the difficulty filter kept {len(hard_idx)} of {len(scores)} examples")


def _per_source(scores: pd.DataFrame, sources: np.ndarray, hard: np.ndarray, alloc: dict[str, int],
                difficulty: dict[str, float], picks: dict[str, dict[str, int]]) -> dict[str, dict]:
    """hard count, budget, D_g, picks per stage and the filter's threshold (lowest kept difficulty)."""
    d = column(scores, "difficulty")
    out = {}
    for src in sorted(set(sources)):
        m = sources == src
        kept = m & hard
        cut = kept.sum() < m.sum() and kept.any()
        out[src] = {"hard": int(kept.sum()), "budget": int(alloc[src]) if src in alloc else None,
                    "group_difficulty": difficulty.get(src), "picks": picks.get(src) or None,
                    "difficulty_threshold": float(d[kept].min()) if cut else None}
    return out
