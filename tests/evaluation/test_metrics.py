"""pass@k against brute-force enumeration, and summarize on a hand-made example."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import pytest

from reasonsift.evaluation.metrics import pass_at_k, summarize


def _pass_at_k_brute(n: int, c: int, k: int) -> float:
    """Fraction of all k-subsets of n samples (c correct) that hold at least one correct sample."""
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(samples[i] for i in s) for s in subsets) / len(subsets)


def test_pass_at_k_matches_enumeration():
    for n in range(1, 8):
        for c in range(n + 1):
            for k in range(1, n + 1):
                assert pass_at_k(n, c, k) == pytest.approx(_pass_at_k_brute(n, c, k), abs=1e-12), (n, c, k)


def test_pass_at_k_large_n_is_stable():
    # C(1000, 500) overflows a float; the product form does not
    n, c, k = 1000, 3, 500
    exact = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
    assert pass_at_k(n, c, k) == pytest.approx(float(exact), rel=1e-12)
    assert pass_at_k(200, 20, 1) == pytest.approx(0.1)


@pytest.mark.parametrize(("n", "c", "k"), [(4, 5, 1), (4, -1, 1), (4, 2, 0), (4, 2, 5)])
def test_pass_at_k_rejects_bad_arguments(n: int, c: int, k: int):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_summarize_hand_made():
    per_item = [
        {"id": "a", "correct": [True, False, False, False]},
        {"id": "b", "correct": [False, True, True, False]},
        {"id": "c", "correct": [False, False, False, False]},
    ]
    out = summarize(per_item, ks=[1, 2, 4, 8])
    assert out["n_items"] == 3
    assert out["accuracy"] == pytest.approx(1 / 3)  # only item a's first sample is right
    assert out["pass@1"] == pytest.approx((1 / 4 + 2 / 4 + 0) / 3)
    assert out["pass@2"] == pytest.approx(((1 - 3 / 6) + (1 - 1 / 6) + 0) / 3)  # 1 - C(n-c,2)/C(4,2)
    assert out["pass@4"] == pytest.approx(2 / 3)
    assert "pass@8" not in out  # more than the 4 samples per item
    assert out["mean_correct"] == pytest.approx(3 / 12)


def test_summarize_greedy_only_and_errors():
    out = summarize([{"correct": [True]}, {"correct": [False]}], ks=[1, 4])
    assert out == {"n_items": 2, "accuracy": 0.5, "pass@1": 0.5, "mean_correct": 0.5}
    with pytest.raises(ValueError):
        summarize([], ks=[1])
    with pytest.raises(ValueError, match="no samples"):
        summarize([{"id": "x", "correct": []}], ks=[1])


def test_pass_at_k_values_always_include_the_sample_count():
    from reasonsift.evaluation.run_evaluation import pass_at_k_values

    assert pass_at_k_values(1) == [1]
    assert pass_at_k_values(3) == [1, 2, 3]
    assert pass_at_k_values(6) == [1, 2, 4, 6]
    assert pass_at_k_values(8) == [1, 2, 4, 8]
    assert pass_at_k_values(100) == [1, 2, 4, 8, 16, 32, 64, 100]


def test_pass_at_k_hand_example_against_the_estimator():
    # 5 samples, 2 right: pass@2 = 1 - C(3,2)/C(5,2) = 1 - 3/10; pass@3 = 1 - C(3,3)/C(5,3) = 1 - 1/10.
    assert pass_at_k(5, 2, 2) == pytest.approx(0.7)
    assert pass_at_k(5, 2, 3) == pytest.approx(0.9)
    assert pass_at_k(5, 2, 4) == 1.0  # only 3 wrong samples: every 4-subset holds a right one
    out = summarize([{"correct": [True, False, True, False, False]}, {"correct": [False] * 5}], ks=[2, 3, 5])
    assert out["pass@2"] == pytest.approx(0.35) and out["pass@3"] == pytest.approx(0.45)
    assert out["pass@5"] == pytest.approx(0.5)
