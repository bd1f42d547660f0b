"""Signal health: does TEMP's difficulty signal mean anything on *this* pool? (report.json "signals")

TEMP's filter keeps, per source, the high-loss cluster of a k = 2 split of ``difficulty`` (the θ_rnd
100-token loss). Nothing guarantees that this loss measures difficulty on a given pool and model; the
synthetic world showed how it fails: a response of a handful of tokens has a high mean loss and wins
the filter, and with noise too weak for the model "difficulty" is only θ₀'s loss. These checks run
on the user's own score table after ``score`` and ``select``:

- Spearman correlation of ``difficulty`` with response length and with prompt length;
- the hard cluster (the same per-source k = 2 split, high-loss side): its size, and the share of very
  short responses in it against the pool's (short = below a quarter of the pool's median response
  length, or ``select.min_response_tokens`` when that guard is set) — truncated traces show up here;
- θ_rnd's loss ratio to θ₀ against the [2, 3] band;
- after ``select``: the size distribution of the loss-vector clusters, and how much of the subset
  came from clusters of two or more taken whole (balanced quotas take a cluster smaller than its
  quota entirely; on the synthetic world over half of those rows were degenerate loops, whose
  outlying loss vectors k-means isolates — the rows worth looking at first).

Each degenerate reading adds a plain-language line to ``warnings``. Thresholds are heuristics, named
below, and the numbers are always reported so a user can judge for themselves.
"""

from __future__ import annotations

import html
from typing import Any

import numpy as np
import pandas as pd

from reasonsift.selection.kmeans import kmeans

LENGTH_RHO_WARN = 0.7  # |Spearman| of difficulty with a length above this: difficulty is mostly length
SHORT_FRACTION_OF_MEDIAN = 0.25  # "very short": fewer response tokens than this share of the median
SHORT_LIFT_WARN = 2.0  # warn when short responses are this many times more common in the hard cluster ...
SHORT_SHARE_WARN = 0.05  # ... and make up at least this share of it
BIG_CLUSTER_WARN = 0.5  # one loss-vector cluster holding more than this share of the clustered examples
SINGLETON_WARN = 0.5  # or more than this share of clusters having a single member


def spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    """Spearman rank correlation over finite pairs (average ranks for ties); None when undefined."""
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3:
        return None
    rx, ry = pd.Series(x[ok]).rank().to_numpy(), pd.Series(y[ok]).rank().to_numpy()
    if rx.std() == 0 or ry.std() == 0:
        return None
    return float(np.corrcoef(rx, ry)[0, 1])


def hard_cluster(scores: pd.DataFrame, seed: int = 42) -> np.ndarray:
    """(n,) bool: per source, the high-mean side of a seeded k = 2 k-means on ``difficulty`` (TEMP's split)."""
    d = scores["difficulty"].to_numpy(dtype=np.float64)
    sources = scores["source"].astype(str).to_numpy()
    hard = np.zeros(len(scores), dtype=bool)
    for src in sorted(set(sources)):
        idx = np.flatnonzero((sources == src) & np.isfinite(d))
        if len(idx) < 2:
            continue
        labels, _ = kmeans(d[idx], 2, seed, 20)
        present = np.unique(labels)
        if len(present) < 2:  # every value equal: no hard side
            continue
        means = [d[idx][labels == c].mean() for c in present]
        hard[idx[labels == present[int(np.argmax(means))]]] = True
    return hard


def _r(x: float | None) -> float | None:
    return None if x is None else round(float(x), 4)


def compute_signals(scores: pd.DataFrame, theta_rnd: dict[str, Any] | None, cluster: np.ndarray | None = None,
                    min_response_tokens: int = 0, seed: int = 42,
                    selected: np.ndarray | None = None) -> dict[str, Any]:
    """The signals section for a score table (one row per example).

    theta_rnd: the scoring report's ``theta_rnd`` record (None when no Gaussian checkpoint was scored).
    cluster: (n,) loss-vector cluster per row from ``select`` (-1 = not clustered), keyed within source.
    min_response_tokens: the ``select.min_response_tokens`` guard (0 = off); when set it is the "short" line.
    selected: (n,) bool, the selection (with ``cluster``: the clusters taken whole).
    """
    warnings: list[str] = []
    out: dict[str, Any] = {}
    resp = scores["n_response_tokens"].to_numpy(dtype=np.float64)
    prompt = (scores["n_prompt_tokens"].to_numpy(dtype=np.float64) if "n_prompt_tokens" in scores
              else np.full(len(scores), np.nan))
    d = scores["difficulty"].to_numpy(dtype=np.float64) if "difficulty" in scores else np.full(len(scores), np.nan)
    if not np.isfinite(d).any():
        warnings.append("No difficulty was scored (no Gaussian checkpoint), so TEMP's difficulty filter has "
                        "nothing to work with.")
    else:
        for name, length in (("response", resp), ("prompt", prompt)):
            rho = spearman(d, length)
            out[f"difficulty_vs_{name}_length"] = _r(rho)
            if rho is not None and abs(rho) >= LENGTH_RHO_WARN:
                which = "longer" if rho > 0 else "shorter"
                warnings.append(f"Difficulty mostly follows {name} length here (Spearman {rho:+.2f}): the 'hard' "
                                f"examples are largely the ones with {which} {name}s, so the difficulty filter acts "
                                "as a length filter on this pool.")
        hard = hard_cluster(scores, seed)
        threshold = float(min_response_tokens) if min_response_tokens > 0 else \
            SHORT_FRACTION_OF_MEDIAN * float(np.median(resp))
        short = resp < threshold
        pool_share = float(short.mean())
        hard_share = float(short[hard].mean()) if hard.any() else 0.0
        out["hard_cluster"] = {"size": int(hard.sum()), "share_of_pool": _r(hard.mean()),
                               "short_response_tokens_below": round(threshold, 1),
                               "short_share_of_pool": _r(pool_share), "short_share_of_hard": _r(hard_share),
                               "short_in_hard": int((short & hard).sum())}
        if hard.any() and hard_share >= SHORT_SHARE_WARN and hard_share >= SHORT_LIFT_WARN * max(pool_share, 1e-12):
            warnings.append(f"{hard_share:.0%} of the hard cluster are very short responses (under {threshold:.0f} "
                            f"tokens) against {pool_share:.0%} of the pool: a few tokens with a high mean loss "
                            "win the difficulty filter. Look at these rows (often truncated or empty answers); "
                            f"select.min_response_tokens={int(np.ceil(threshold))} keeps them out.")
    if theta_rnd:
        low, high = theta_rnd.get("target_range", [2.0, 3.0])
        out["theta_rnd"] = {"checkpoint": theta_rnd.get("checkpoint"), "ratio": _r(theta_rnd.get("ratio")),
                            "in_range": bool(theta_rnd.get("in_range"))}
        if not theta_rnd.get("in_range"):
            warnings.append(f"θ_rnd's mean loss is {theta_rnd.get('ratio', float('nan')):.3g}x θ₀'s, outside the "
                            f"[{low:g}, {high:g}] the method needs: the noise does not fit this model, so "
                            "'difficulty' is close to θ₀'s plain loss. Use score.noise=calibrate (the default).")
    if cluster is not None:
        keys = pd.Series([f"{s}/{c}" for s, c in zip(scores["source"].astype(str), cluster) if c >= 0])
        sizes = np.sort(keys.value_counts().to_numpy())[::-1] if len(keys) else np.zeros(0, dtype=int)
        if len(sizes):
            out["clusters"] = {"count": int(len(sizes)), "clustered_examples": int(sizes.sum()),
                               "largest": int(sizes[0]), "median": float(np.median(sizes)),
                               "smallest": int(sizes[-1]), "singletons": int((sizes == 1).sum())}
            if selected is not None and selected.any():
                out["clusters"].update(_taken_whole(scores["source"].astype(str).to_numpy(), cluster, selected))
            if len(sizes) >= 4 and sizes[0] > BIG_CLUSTER_WARN * sizes.sum():
                warnings.append(f"One loss-vector cluster holds {sizes[0] / sizes.sum():.0%} of the clustered "
                                "examples: the loss vectors barely separate them, so 'diversity' picks little.")
            if len(sizes) >= 4 and (sizes == 1).mean() > SINGLETON_WARN:
                warnings.append(f"{(sizes == 1).mean():.0%} of the loss-vector clusters have a single member: "
                                "the vectors are too noisy to group similar examples.")
    out["warnings"] = warnings
    return out


def _taken_whole(sources: np.ndarray, cluster: np.ndarray, selected: np.ndarray) -> dict[str, Any]:
    """Clusters of two or more whose every member was selected, and their share of the selection."""
    frame = pd.DataFrame({"source": sources, "cluster": cluster, "selected": selected})[cluster >= 0]
    per = frame.groupby(["source", "cluster"])["selected"].agg(["size", "sum"])
    whole = per[(per["size"] >= 2) & (per["sum"] == per["size"])]
    rows = int(whole["size"].sum())
    return {"taken_whole": int(len(whole)), "taken_whole_rows": rows,
            "taken_whole_share_of_selected": _r(rows / int(selected.sum()))}


def signals_html(signals: dict[str, Any] | None) -> str:
    """The report page's "Signal health" section (a few lines and the warnings, in plain words)."""
    if not signals:
        return '<p class="muted">No signals were computed for this run.</p>'

    def fmt(x: Any) -> str:
        return "n/a" if x is None else (f"{x:+.2f}" if isinstance(x, float) else html.escape(str(x)))

    rows = [("difficulty vs response length (Spearman)", fmt(signals.get("difficulty_vs_response_length"))),
            ("difficulty vs prompt length (Spearman)", fmt(signals.get("difficulty_vs_prompt_length")))]
    hc = signals.get("hard_cluster")
    if hc:
        rows.append(("hard cluster (k = 2 on difficulty, per source)",
                     f"{hc['size']} examples ({hc['share_of_pool']:.0%} of the pool)"))
        rows.append((f"very short responses (under {hc['short_response_tokens_below']:g} tokens)",
                     f"{hc['short_share_of_hard']:.0%} of the hard cluster, {hc['short_share_of_pool']:.0%} of the pool"))
    tr = signals.get("theta_rnd")
    if tr:
        rows.append(("θ_rnd loss ratio to θ₀", f"{tr['ratio']:.3g} (checkpoint {tr['checkpoint']}, "
                                                f"{'in' if tr['in_range'] else 'OUTSIDE'} the target band)"))
    cl = signals.get("clusters")
    if cl:
        rows.append(("loss-vector clusters", f"{cl['count']} clusters; sizes {cl['smallest']} … median "
                                              f"{cl['median']:g} … {cl['largest']}; {cl['singletons']} singletons"))
        if "taken_whole" in cl:
            rows.append(("clusters of 2+ taken whole (outliers gather here: look at these rows first)",
                         f"{cl['taken_whole']} clusters, {cl['taken_whole_rows']} rows = "
                         f"{cl['taken_whole_share_of_selected']:.0%} of the selection"))
    table = "<table>" + "".join(f"<tr><td>{html.escape(k)}</td><td>{v}</td></tr>" for k, v in rows) + "</table>"
    warns = signals.get("warnings") or []
    verdict = ("<ul>" + "".join(f"<li><b>Warning:</b> {html.escape(w)}</li>" for w in warns) + "</ul>" if warns
               else "<p>No signal looks degenerate on this pool.</p>")
    return table + verdict
