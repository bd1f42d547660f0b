"""Evaluation metrics: unbiased pass@k and the per-benchmark summary written to ``eval/metrics.json``."""

from __future__ import annotations


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``n`` samples of which ``c`` are correct: ``1 - C(n-c, k) / C(n, k)``.

    Computed as ``1 - prod_{i=n-c+1}^{n} (1 - k/i)`` (Chen et al. 2021, Codex): the binomials overflow
    floats for n in the hundreds, the product does not.
    """
    if not (0 <= c <= n) or not (1 <= k <= n):
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:  # every k-subset holds a correct sample
        return 1.0
    prob_all_wrong = 1.0
    for i in range(n - c + 1, n + 1):
        prob_all_wrong *= 1.0 - k / i
    return 1.0 - prob_all_wrong


def summarize(per_item: list[dict], ks: list[int]) -> dict:
    """Benchmark summary from per-item results, each with ``correct: list[bool]`` (one per sample).

    Returns ``{"n_items", "accuracy", "pass@k"..., "mean_correct"}``: ``accuracy`` is the mean of the
    first sample's correctness (the greedy sample when sample 0 is greedy), ``pass@k`` the mean
    unbiased estimate for each k no larger than the fewest samples any item has (larger k are left
    out rather than estimated from too few samples), ``mean_correct`` the mean over all samples.
    """
    if not per_item:
        raise ValueError("summarize needs at least one item")
    if any(k < 1 for k in ks):
        raise ValueError(f"every k must be >= 1, got {ks}")
    counts = []  # (n samples, c correct) per item
    for i, item in enumerate(per_item):
        correct = item.get("correct")
        if not correct:
            raise ValueError(f"item {item.get('id', i)!r} has no samples in 'correct'")
        counts.append((len(correct), sum(bool(x) for x in correct)))
    num_items = len(per_item)
    min_samples = min(n for n, _ in counts)
    summary: dict = {
        "n_items": num_items,
        "accuracy": sum(bool(item["correct"][0]) for item in per_item) / num_items,
    }
    for k in sorted(set(ks)):
        if k <= min_samples:
            summary[f"pass@{k}"] = sum(pass_at_k(n, c, k) for n, c in counts) / num_items
    summary["mean_correct"] = sum(c for _, c in counts) / sum(n for n, _ in counts)
    return summary
