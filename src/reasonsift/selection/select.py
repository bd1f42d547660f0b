"""The one entry point of the selection stage: ``select(scores, cfg)`` runs ``cfg.method``.

All methods are pure functions of the score table (plus embeddings for the embedding baseline)
and ``SelectConfig``; every random choice is seeded from ``cfg.seed``, so the same inputs and seed
give the same subset, and a different seed changes only the seeded parts (k-means initialisation,
random draws).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from reasonsift.config import SelectConfig
from reasonsift.selection.baselines import (select_difficulty, select_embedding, select_full_loss, select_longest,
                                            select_middle_perplexity, select_random, select_s2l)
from reasonsift.selection.common import Selection
from reasonsift.selection.kmeans import backend
from reasonsift.selection.temp import select_temp

METHODS = {
    "temp": select_temp,
    "random": select_random,
    "longest": select_longest,
    "middle-perplexity": select_middle_perplexity,
    "difficulty": select_difficulty,
    "full-loss": select_full_loss,
    "s2l": select_s2l,
    "embedding": select_embedding,
}


def select(scores: pd.DataFrame, cfg: SelectConfig, embeddings: np.ndarray | None = None) -> Selection:
    """Select a subset of ``scores`` (one row per example) with ``cfg.method`` under ``cfg``'s budget.

    embeddings: (n, d) per scores row, required by (and only used by) method "embedding".
    """
    if cfg.method not in METHODS:
        raise ValueError(f"unknown select.method {cfg.method!r}; known: {', '.join(METHODS)}")
    if cfg.min_response_tokens > 0:
        return _without_short(scores, cfg, embeddings)
    if cfg.method == "embedding":
        if embeddings is None:
            raise ValueError("select.method=embedding needs an embeddings array (n, d), one row per example")
        selection = select_embedding(scores, cfg, embeddings)
    else:
        selection = METHODS[cfg.method](scores, cfg)
    if cfg.method in ("temp", "s2l", "embedding"):
        selection.report["kmeans_backend"] = backend()  # faiss and sklearn give different clusters
    return selection


def _without_short(scores: pd.DataFrame, cfg: SelectConfig, embeddings: np.ndarray | None) -> Selection:
    """``select.min_response_tokens``: run the method on the rows with enough response tokens only.

    The short rows are never selected nor clustered (cluster -1); the report counts them and keeps the
    method's own numbers for the rows it saw, with ``n_pool`` and ``pool_tokens`` back on the whole pool.
    """
    keep = scores["n_response_tokens"].to_numpy() >= cfg.min_response_tokens  # (n,)
    if not keep.any():
        raise ValueError(f"select.min_response_tokens={cfg.min_response_tokens} leaves no example "
                         f"(the longest response has {int(scores['n_response_tokens'].max())} tokens)")
    inner = select(scores[keep].reset_index(drop=True), dataclasses.replace(cfg, min_response_tokens=0),
                   None if embeddings is None else embeddings[keep])
    selected = np.zeros(len(scores), dtype=bool)
    selected[keep] = inner.selected
    cluster = np.full(len(scores), -1, dtype=np.int64)
    cluster[keep] = inner.cluster
    n_short = int((~keep).sum())
    report = {**inner.report, "n_pool": int(len(scores)),
              "pool_tokens": int(scores["n_response_tokens"].sum()),
              "min_response_tokens": {"value": cfg.min_response_tokens, "excluded": n_short}}
    report["notes"] = [*inner.report.get("notes", []),
                       f"select.min_response_tokens={cfg.min_response_tokens}: {n_short} examples with shorter "
                       "responses were left out before selection"]
    return Selection(inner.ids, cluster, selected, report)
