"""Hand-made score tables for the selection tests (no model needed)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest


def make_scores(sizes: dict[str, int], seed: int = 0, domains: dict[str, str] | None = None,
                n_ckpts: int = 8) -> pd.DataFrame:
    """A plausible score table: per source, bimodal difficulty, rising loss vectors, varied lengths.

    sizes: rows per source. Row order is shuffled relative to row_index so tests catch code that
    confuses table order with input order.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for s_i, (src, n) in enumerate(sizes.items()):
        for j in range(n):
            hard = rng.random() < 0.5
            base = rng.normal(2.0 + 0.3 * s_i, 0.2)
            slope = rng.uniform(0.05, 0.4)
            l1000 = base + slope * np.arange(n_ckpts) + rng.normal(0, 0.02, n_ckpts)
            l100 = l1000 + 0.3
            rows.append({
                "id": f"{src}-{j}", "source": src, "domain": (domains or {}).get(src, "math"),
                "n_response_tokens": int(rng.integers(50, 2000)),
                "response_chars": int(rng.integers(200, 9000)),
                "base_loss_100": float(base + 0.3), "base_loss_1000": float(base),
                "difficulty": float(rng.normal(6.0 if hard else 3.0, 0.3)),
                "loss_100": l100.tolist(), "loss_1000": l1000.tolist(),
                "brittleness": float(l1000[-1] - l1000[0]), "full_loss": float(base + rng.normal(0, 0.1)),
            })
    df = pd.DataFrame(rows)
    df["row_index"] = np.arange(len(df))
    return df.sample(frac=1.0, random_state=seed).reset_index(drop=True)


@pytest.fixture()
def scores() -> pd.DataFrame:
    """Three sources of different sizes in two domains (300 rows)."""
    return make_scores({"a": 30, "b": 110, "c": 160}, domains={"a": "math", "b": "math", "c": "code"})
