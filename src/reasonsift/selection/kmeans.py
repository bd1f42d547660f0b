"""Seeded k-means: faiss when it is installed (what TEMP and S2L use), scikit-learn otherwise.

Both backends honour one contract: deterministic for a given (x, k, seed, iters); ``k`` is clamped
to the number of points; labels lie in ``0..k-1`` and are the nearest centroid (Euclidean, ties to
the lower index), recomputed here so the two backends cannot disagree on assignment. The two
backends do not produce the *same* clusters for the same seed (different initialisations), so a
selection made with faiss installed differs from one made without; ``backend()`` says which ran.
"""

from __future__ import annotations

import warnings

import numpy as np


def backend() -> str:
    """"faiss" when ``import faiss`` works, else "sklearn"."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        return "sklearn"
    return "faiss"


def nearest_centroid(x: np.ndarray, centroids: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Index of the nearest centroid for every row of ``x`` (n, d) -> (n,) int64, ties to the lower index.

    Chunked so n x k distances never sit in memory at once (k is ~B/4 for TEMP, B for the embedding
    baseline).
    """
    c = np.asarray(centroids, dtype=np.float64)
    c_sq = (c * c).sum(1)  # (k,)
    out = np.empty(len(x), dtype=np.int64)
    for start in range(0, len(x), chunk):
        xb = np.asarray(x[start:start + chunk], dtype=np.float64)  # (b, d), converted per chunk
        # ‖x − c‖² = ‖x‖² − 2x·c + ‖c‖²; ‖x‖² is constant per row, so it does not change the argmin
        d2 = c_sq[None, :] - 2.0 * (xb @ c.T)  # (b, k)
        out[start:start + chunk] = d2.argmin(1)
    return out


def _faiss_centroids(x: np.ndarray, k: int, seed: int, iters: int) -> np.ndarray:
    import faiss

    xf = np.ascontiguousarray(x, dtype=np.float32)
    # min_points_per_centroid=1 only silences faiss's "please provide at least N points" stderr line;
    # max_points_per_centroid keeps its default (256), so large inputs are subsampled (seeded) for
    # training exactly as in the official code
    km = faiss.Kmeans(xf.shape[1], k, niter=iters, seed=seed, verbose=False, min_points_per_centroid=1)
    km.train(xf)
    return np.asarray(km.centroids, dtype=np.float64)


def _sklearn_centroids(x: np.ndarray, k: int, seed: int, iters: int) -> np.ndarray:
    from sklearn.cluster import KMeans

    # n_init=1 and a fixed iteration cap mirror faiss.Kmeans(niter=iters); tol=0 runs until the
    # labels stop changing (or the cap), as faiss does, instead of sklearn's early relative-tol stop.
    km = KMeans(n_clusters=k, n_init=1, max_iter=iters, tol=0.0, random_state=seed)
    with warnings.catch_warnings():
        # duplicate points can leave fewer distinct clusters than k: harmless, empty clusters are
        # simply never assigned
        warnings.simplefilter("ignore")
        km.fit(x)
    return np.asarray(km.cluster_centers_, dtype=np.float64)


def kmeans(x: np.ndarray, k: int, seed: int, iters: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Cluster ``x`` (n, d) — or (n,), treated as (n, 1) — into ``min(k, n)`` clusters.

    Returns ``(labels (n,) int64 in 0..k'-1, centroids (k', d) float64)`` with ``k' = min(k, n)``.
    NaNs must be removed by the caller. k' = 1 needs no iterations (the centroid is the mean).
    """
    x = np.asarray(x)
    if x.dtype not in (np.float32, np.float64):  # float32 stays float32: embeddings can be large
        x = x.astype(np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"kmeans expects a (n, d) array, got shape {x.shape}")
    if k < 1:
        raise ValueError(f"kmeans needs k >= 1, got {k}")
    n = len(x)
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros((0, x.shape[1]))
    if not np.isfinite(x).all():
        raise ValueError("kmeans input contains NaN or inf")
    k = min(k, n)
    if k == 1:
        centroids = x.mean(0, keepdims=True, dtype=np.float64)
    elif backend() == "faiss":
        centroids = _faiss_centroids(x, k, seed, iters)
    else:
        centroids = _sklearn_centroids(x, k, seed, iters)
    return nearest_centroid(x, centroids), centroids
