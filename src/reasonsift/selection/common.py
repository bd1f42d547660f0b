"""What every selection method shares: the ``Selection`` result, budgets, and the greedy walks.

Budgets. ``select.budget`` counts examples; ``select.budget_tokens`` counts ``n_response_tokens``.
Internally both are one integer ``amount`` plus a per-example ``cost`` (all ones, or the token
counts), so every rule below is written once. "Met exactly" means:
- examples: exactly ``budget`` examples, unless the method's eligible set is smaller, in which case
  all of it is taken and ``report["notes"]`` says why;
- tokens: total ≤ ``budget_tokens`` and nothing else fits, i.e. no unselected eligible example is
  short enough for the slack left. Methods spend the budget with ``take_in_order`` (walk a
  preference order, take each example that still fits, skip the rest); ``finish`` then runs one
  greedy fill pass over the method's preference order, which is what guarantees the "nothing else
  fits" half. Methods that split the budget over sources (TEMP, S2L) fill each source up to its own
  budget first, so the final pass only spends slack that no source could use on its own; whatever
  it adds beyond a source's budget is reported as that source's ``overrun`` (and in the notes).
"Eligible" is the whole pool except for TEMP (the difficulty-filtered subset) and full-loss (rows
that have a ``full_loss``).
"""

from __future__ import annotations

import dataclasses
import logging
import zlib
from typing import Any, Callable

import numpy as np
import pandas as pd

from reasonsift.config import SelectConfig

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, eq=False)
class Selection:
    """A chosen subset of a score table.

    ids: selected example ids in input order (ascending ``row_index``).
    cluster: (n,) int per scores row: its loss-vector (or embedding) cluster within its source,
        -1 where the method did not cluster it.
    selected: (n,) bool per scores row.
    report: JSON-serialisable summary (method, budgets, per-source and per-cluster counts, notes).
    """

    ids: list[str]
    cluster: np.ndarray
    selected: np.ndarray
    report: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Budget:
    """A resolved budget: ``amount`` in units of ``cost`` (ones for examples, tokens otherwise)."""

    kind: str  # "examples" | "tokens"
    amount: int
    cost: np.ndarray  # (n,) int64, >= 1


def resolve_budget(scores: pd.DataFrame, cfg: SelectConfig) -> Budget:
    """Turn ``cfg.budget`` / ``cfg.budget_tokens`` into a ``Budget``; exactly one must be set."""
    if (cfg.budget is None) == (cfg.budget_tokens is None):
        raise ValueError("give exactly one of select.budget (examples) or select.budget_tokens (response "
                         f"tokens); got budget={cfg.budget}, budget_tokens={cfg.budget_tokens}")
    if cfg.budget is not None:
        if cfg.budget < 1:
            raise ValueError(f"select.budget must be >= 1, got {cfg.budget}")
        return Budget("examples", int(cfg.budget), np.ones(len(scores), dtype=np.int64))
    if cfg.budget_tokens < 1:
        raise ValueError(f"select.budget_tokens must be >= 1, got {cfg.budget_tokens}")
    tokens = scores["n_response_tokens"].to_numpy()
    # an empty response still occupies a training slot, so nothing is free: cost at least 1
    return Budget("tokens", int(cfg.budget_tokens), np.maximum(tokens.astype(np.int64), 1))


def check_columns(scores: pd.DataFrame, columns: list[str], method: str) -> None:
    """Raise a ValueError naming the score columns ``method`` needs but ``scores`` lacks."""
    missing = [c for c in columns if c not in scores.columns]
    if missing:
        raise ValueError(f"select.method={method} needs score column(s) {', '.join(missing)}, which "
                         f"scores lacks (it has: {', '.join(map(str, scores.columns))})")
    if len(scores) == 0:
        raise ValueError("the score table is empty: nothing to select from")
    if "id" in columns and not scores["id"].is_unique:
        raise ValueError("score ids are not unique")


def loss_matrix(scores: pd.DataFrame, column: str) -> np.ndarray:
    """Stack a list-valued column (``loss_100``, ``loss_1000``) into (n, m) float64, NaN -> 0.

    NaN -> 0 is what the official code does when loading losses (temp-method.md §1.1).
    """
    rows = [np.asarray(v, dtype=np.float64) for v in scores[column].to_numpy()]
    lengths = {len(r) for r in rows}
    if len(lengths) != 1 or 0 in lengths:
        raise ValueError(f"column {column} must hold equal-length, non-empty lists (lengths {sorted(lengths)})")
    return np.nan_to_num(np.stack(rows), nan=0.0)


def column(scores: pd.DataFrame, name: str) -> np.ndarray:
    """A numeric column as float64 with NaN -> 0 (same convention as ``loss_matrix``)."""
    return np.nan_to_num(scores[name].to_numpy(dtype=np.float64), nan=0.0)


def rng_for(seed: int, key: str = "") -> np.random.Generator:
    """A generator for one (seed, key), e.g. one per source, so a source's draws do not depend on
    which other sources exist or the order they are processed in."""
    return np.random.default_rng([seed, zlib.crc32(key.encode("utf-8"))])


def take_in_order(order: np.ndarray, cost: np.ndarray, budget: int) -> np.ndarray:
    """Walk ``order`` (indices), take each one whose cost still fits in ``budget``; return those taken.

    With unit costs this is ``order[:budget]``. With token costs an example too long for what is
    left is skipped and the walk goes on, so the budget is filled as far as the order allows and an
    example is only ever passed over for one that comes later in the order *and* fits.
    """
    order = np.asarray(order, dtype=np.int64)
    if budget <= 0 or len(order) == 0:
        return order[:0]
    c = cost[order]
    if (c == 1).all():
        return order[:budget]
    taken, left = [], int(budget)
    smallest = int(c.min())
    for i, ci in zip(order.tolist(), c.tolist()):
        if ci <= left:
            taken.append(i)
            left -= ci
            if left < smallest:
                break
    return np.asarray(taken, dtype=np.int64)


def small_sources_whole(sizes: dict[str, int], budget: int) -> tuple[list[str], int]:
    """S2L's per-source rule: smallest source first, take a source whole when its size is at most
    ``remaining budget // sources not yet taken``; return (sources taken whole, budget left).

    Used by TEMP's difficulty filter and by the S2L baseline (temp-method.md §1.3 step 4, §4.2).
    Sizes and budget share a unit (examples or tokens). Ties in size go by name, so it is stable.
    """
    order = sorted(sizes, key=lambda s: (sizes[s], s))
    whole: list[str] = []
    left = int(budget)
    for src in order:
        if sizes[src] <= left // (len(order) - len(whole)):
            whole.append(src)
            left -= sizes[src]
    return whole, left


def balanced_cluster_pick(labels: np.ndarray, rank: Callable[[np.ndarray], np.ndarray], cost: np.ndarray,
                          budget: int, min_size: int, rng: np.random.Generator,
                          rest: np.ndarray | None = None) -> tuple[np.ndarray, dict[str, int]]:
    """Spread ``budget`` over clusters, smallest first, with shortfalls rolling forward (S2L / TEMP).

    labels: (n,) cluster of each example. rank(members) -> members in the order to take them
    (TEMP: brittleness; S2L: a random permutation). Three stages, each only spending what the
    previous ones left:
    1. "quota": clusters with >= ``min_size`` members (TEMP 2, S2L 3), by ascending size (ties by
       label), each get quota = remaining // clusters left, filled in rank order with
       ``take_in_order`` (under a token budget an example that does not fit is skipped for the next
       one in rank order that does); what a cluster does not use rolls on to the next.
    2. "small": what is left is drawn uniformly at random from the clusters smaller than
       ``min_size`` (TEMP's singletons), as in the official code.
    3. "rest": only reachable when the small clusters run out, or under a token budget whose quotas
       left slack too small for their own next example: unselected members are taken in ``rest``
       order (TEMP: brittleness over the whole source; default: uniformly at random) while they fit.
    With unit costs stage 3 never fires unless the budget exceeds what stages 1-2 can give.
    Returns (mask (n,) bool, counts of picks per stage: "quota", "small", "rest").
    """
    mask = np.zeros(len(labels), dtype=bool)
    ids, counts = np.unique(labels, return_counts=True)
    big = [c for _, c in sorted((n, c) for c, n in zip(ids.tolist(), counts.tolist()) if n >= min_size)]
    left, stats = int(budget), {"quota": 0, "small": 0, "rest": 0}
    for i, c in enumerate(big):
        quota = left // (len(big) - i)
        chosen = take_in_order(rank(np.flatnonzero(labels == c)), cost, quota)
        mask[chosen] = True
        left -= int(cost[chosen].sum())
        stats["quota"] += len(chosen)
    small = np.flatnonzero(np.isin(labels, ids[counts < min_size]))
    for stage, pool in (("small", rng.permutation(small)), ("rest", rest)):
        if left <= 0:
            break
        pool = rng.permutation(len(labels)) if pool is None else np.asarray(pool, dtype=np.int64)
        chosen = take_in_order(pool[~mask[pool]], cost, left)
        mask[chosen] = True
        left -= int(cost[chosen].sum())
        stats[stage] += len(chosen)
    return mask, stats


def finish(scores: pd.DataFrame, cfg: SelectConfig, budget: Budget, selected: np.ndarray,
           cluster: np.ndarray, fill_order: np.ndarray, per_source: dict[str, dict[str, Any]] | None = None,
           notes: list[str] | None = None, eligible_why: str = "", cluster_scope: str = "source") -> Selection:
    """Greedy fill, shortfall notes and the report; every method ends here.

    fill_order: the eligible examples in the method's order of preference; unselected ones are added
    in that order while they fit (examples: until the count is reached).
    per_source: extra per-source fields from the method (hard, budget, threshold); pool and selected
    are counted here. cluster_scope: "source" keys clusters "source/c", anything else keys "<scope>/c".
    """
    selected = selected.copy()
    notes = list(notes or [])
    used = int(budget.cost[selected].sum())
    fill_order = np.asarray(fill_order, dtype=np.int64)
    rest = fill_order[~selected[fill_order]]
    added = take_in_order(rest, budget.cost, budget.amount - used)
    if len(added):
        selected[added] = True
        notes.append(f"greedy fill added {len(added)} example(s) ({int(budget.cost[added].sum())} "
                     f"{budget.kind}) after the method's own choice, to use the remaining budget")
    eligible_total = int(budget.cost[fill_order].sum())
    if eligible_total < budget.amount:
        notes.append(f"the budget ({budget.amount} {budget.kind}) is not smaller than the eligible set "
                     f"({len(fill_order)} examples, {eligible_total} {budget.kind}"
                     f"{'; ' + eligible_why if eligible_why else ''}): all of it was taken")
        logger.warning("%s: nothing was selected out, the subset is the whole eligible pool", notes[-1])
    report = build_report(scores, cfg, selected, cluster, per_source or {}, notes, cluster_scope)
    over = {s: v["overrun"] for s, v in report["per_source"].items() if v.get("overrun")}
    if over:
        # per-source budgets are each filled as far as they go; the fill above can still use their
        # pooled slack, which is the one way a source ends up over its own budget: say so
        report["notes"].append("the greedy fill went over per-source budgets to use slack pooled across "
                               "sources: " + ", ".join(f"{s} +{n} {budget.kind}" for s, n in sorted(over.items())))
    return Selection(ids=_ids_in_input_order(scores, selected), cluster=cluster.astype(np.int64),
                     selected=selected, report=report)


def _ids_in_input_order(scores: pd.DataFrame, selected: np.ndarray) -> list[str]:
    chosen = scores.loc[selected, ["id", "row_index"]].sort_values("row_index", kind="stable")
    return [str(i) for i in chosen["id"]]


def build_report(scores: pd.DataFrame, cfg: SelectConfig, selected: np.ndarray, cluster: np.ndarray,
                 per_source: dict[str, dict[str, Any]], notes: list[str], cluster_scope: str) -> dict[str, Any]:
    """The JSON-serialisable selection report (plain Python types only)."""
    sources = scores["source"].astype(str).to_numpy()
    tokens = scores["n_response_tokens"].to_numpy(dtype=np.int64)
    out_sources = {}
    for src in sorted(set(sources)):
        m = sources == src
        extra = per_source.get(src, {})
        n_sel, t_sel = int((m & selected).sum()), int(tokens[m & selected].sum())
        budget = extra.get("budget")
        used = t_sel if cfg.budget_tokens is not None else n_sel  # in the budget's unit
        out_sources[src] = {"pool": int(m.sum()), "hard": extra.get("hard"), "budget": budget,
                            "selected": n_sel, "selected_tokens": t_sel,
                            "overrun": None if budget is None else max(0, used - int(budget)),
                            **{k: v for k, v in extra.items() if k not in ("hard", "budget")}}
    per_cluster = {}
    clustered = np.flatnonzero(cluster >= 0)
    keys = [f"{sources[i] if cluster_scope == 'source' else cluster_scope}/{int(cluster[i])}" for i in clustered]
    for key, i in zip(keys, clustered):
        entry = per_cluster.setdefault(key, {"size": 0, "selected": 0})
        entry["size"] += 1
        entry["selected"] += int(selected[i])
    return {"method": cfg.method, "budget": cfg.budget, "budget_tokens": cfg.budget_tokens, "seed": cfg.seed,
            "n_pool": int(len(scores)), "n_selected": int(selected.sum()),
            "selected_tokens": int(tokens[selected].sum()), "pool_tokens": int(tokens.sum()),
            "per_source": out_sources, "per_cluster": per_cluster, "notes": notes}
