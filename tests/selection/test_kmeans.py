"""k-means: recovers separable blobs, is deterministic, and handles the edge cases selection hits."""

from __future__ import annotations

import numpy as np
import pytest

from reasonsift.selection.kmeans import kmeans, nearest_centroid


def blobs(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0, 0.0], [10.0, 0.0, 5.0], [0.0, 12.0, -4.0]])
    truth = np.repeat(np.arange(3), [40, 25, 60])
    return centres[truth] + rng.normal(0, 0.5, (len(truth), 3)), truth


def test_recovers_separable_blobs():
    x, truth = blobs()
    labels, centroids = kmeans(x, 3, seed=0)
    assert centroids.shape == (3, 3)
    # each true blob maps to exactly one label, and the three labels differ
    mapping = {t: set(labels[truth == t].tolist()) for t in range(3)}
    assert all(len(v) == 1 for v in mapping.values())
    assert len({next(iter(v)) for v in mapping.values()}) == 3


def test_deterministic_given_seed():
    x = np.random.default_rng(1).normal(size=(300, 4))
    a_labels, a_centroids = kmeans(x, 7, seed=5)
    b_labels, b_centroids = kmeans(x, 7, seed=5)
    assert np.array_equal(a_labels, b_labels)
    assert np.array_equal(a_centroids, b_centroids)


def test_labels_are_nearest_centroid():
    x = np.random.default_rng(2).normal(size=(200, 5))
    labels, centroids = kmeans(x, 6, seed=0, iters=3)
    brute = ((x[:, None, :] - centroids[None]) ** 2).sum(-1).argmin(1)
    assert np.array_equal(labels, brute)
    assert np.array_equal(nearest_centroid(x, centroids, chunk=7), brute)


def test_k_at_least_n_gives_one_cluster_per_point():
    x = np.array([[0.0], [1.0], [5.0], [9.0]])
    labels, centroids = kmeans(x, 10, seed=0)
    assert centroids.shape == (4, 1)
    assert sorted(labels.tolist()) == [0, 1, 2, 3]


def test_duplicates_and_k_one_and_1d_input():
    x = np.array([1.0] * 6 + [5.0, 9.0])  # (n,) is treated as (n, 1)
    labels, centroids = kmeans(x, 4, seed=3)
    assert labels.shape == (8,) and labels.min() >= 0 and labels.max() < len(centroids)
    assert len(set(labels[:6].tolist())) == 1  # identical points share a cluster
    one, c1 = kmeans(x, 1, seed=0)
    assert (one == 0).all() and np.isclose(c1[0, 0], x.mean())


def test_rejects_bad_input():
    with pytest.raises(ValueError):
        kmeans(np.zeros((3, 2)), 0, seed=0)
    with pytest.raises(ValueError):
        kmeans(np.array([[0.0], [np.nan]]), 1, seed=0)
