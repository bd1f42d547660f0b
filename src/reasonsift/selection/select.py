"""The one entry point of the selection stage: ``select(scores, cfg)`` runs ``cfg.method``.

All methods are pure functions of the score table (plus embeddings for the embedding baseline)
and ``SelectConfig``; every random choice is seeded from ``cfg.seed``, so the same inputs and seed
give the same subset, and a different seed changes only the seeded parts (k-means initialisation,
random draws).
"""

from __future__ import annotations

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
    if cfg.method == "embedding":
        if embeddings is None:
            raise ValueError("select.method=embedding needs an embeddings array (n, d), one row per example")
        selection = select_embedding(scores, cfg, embeddings)
    else:
        selection = METHODS[cfg.method](scores, cfg)
    if cfg.method in ("temp", "s2l", "embedding"):
        selection.report["kmeans_backend"] = backend()  # faiss and sklearn give different clusters
    return selection
