"""``reasonsift demo``: the whole pipeline on the synthetic world, on a CPU, in minutes.

1. load θ₀ (shipped in the package; built and cached for other recipes), a tiny model pretrained on
   the world's one-step facts and first steps;
2. generate a pool of traces (five task families, 1-6 steps, some low-quality) and held-out problems;
3. θ_f = θ₀ briefly fine-tuned on the whole pool (as the paper does for M23K);
4. score the pool with TEMP and select with TEMP and with random at the same budget;
5. fine-tune θ₀ on each subset with the same recipe, evaluate on every family and difficulty;
6. print a results table, write ``demo_report.html`` and ``demo_results.json``.

The pool rows carry ground truth (``true_difficulty``, ``low_quality``) that scoring and selection
never read; the demo uses it only to check the method afterwards.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
import typing
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from reasonsift.config import DataConfig, ModelConfig, ScoreConfig, SelectConfig
from reasonsift.synth.generate import generate_eval, generate_pool, write_jsonl
from reasonsift.synth.world import BaseRecipe, build_base_model

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class DemoSize:
    """Everything the demo's run time depends on."""

    pool: int = 1000
    eval_per_cell: int = 5
    budget_fraction: float = 0.1
    base: BaseRecipe = BaseRecipe()  # the shipped θ₀: no pretraining in the demo
    theta_f_epochs: float = 6.0  # θ_f sees the pool 6 times: as many example-passes as a 10% subset ...
    subset_epochs: float = 60.0  # ... trained for 60 epochs, so "full" is an equal-compute reference
    learning_rate: float = 3e-3  # a tiny model wants a larger learning rate than an LLM
    batch_size: int = 32
    num_checkpoints: int = 8
    max_new_tokens: int = 448  # the longest trace (6 list operations) is about 420 characters
    short_tokens: int = 32  # characters: about the first step of a trace
    long_tokens: int = 512  # characters: the whole trace
    critical_alternatives: int = 2  # cft arm: substitutes per position (CFT's 2nd and 3rd token)
    critical_max_tokens: int = 512  # cft arm: longer traces are not tested (the cost grows as length²)


FULL = DemoSize(theta_f_epochs=4.0, subset_epochs=40.0, learning_rate=2e-3, batch_size=16)  # ~8.5 min on 2 cores
# benchmarks/synthetic_validation.py: more SFT (about 12 minutes a seed for TEMP + random)
VALIDATION = DemoSize()
QUICK = DemoSize(pool=200, eval_per_cell=1, base=BaseRecipe(steps=60, corpus_lines=5_000, seq_len=128),
                 theta_f_epochs=1.0, subset_epochs=3.0, num_checkpoints=3, max_new_tokens=100,
                 critical_alternatives=1, critical_max_tokens=60)


def _train(data: Path, base: Path, out: Path, epochs: float, seed: int, size: DemoSize, progress: bool,
           objective: str = "sft") -> Path:
    """Full fine-tune of θ₀ with the demo's recipe (SFT, or CFT on a file with critical masks)."""
    from reasonsift.config import TrainConfig
    from reasonsift.training.run_training import run_training

    if (out / "model.safetensors").exists():
        return out
    train = TrainConfig(objective=objective, learning_rate=size.learning_rate, num_train_epochs=epochs,
                        per_device_train_batch_size=size.batch_size, gradient_accumulation_steps=1, max_length=768,
                        seed=seed, warmup_ratio=0.05, weight_decay=0.0, save_steps=100_000, logging_steps=10)
    run_training(str(data), {"data": DataConfig(), "model": ModelConfig(model=str(base)), "train": train},
                 out, command="reasonsift demo", progress=progress)
    return out


def _evaluate(model: Path, bench: Path, size: DemoSize, progress: bool, out: Path | None = None) -> list[dict[str, Any]]:
    """Evaluate into ``out`` (default MODEL/eval; θ₀ passes a folder of the demo: it may be the package's)."""
    from reasonsift.config import EvalConfig
    from reasonsift.evaluation.run_evaluation import run_evaluation

    out = out or model / "eval"
    cfg = EvalConfig(max_new_tokens=size.max_new_tokens, batch_size=64, answer_kind="text")
    run_evaluation(str(model), str(bench), {"evaluate": cfg, "model": ModelConfig(model=str(model))},
                   out, command="reasonsift demo", progress=progress)
    return [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]


def _curate(pool: Path, base: Path, theta_f: Path, run: Path, size: DemoSize, method: str, seed: int,
            progress: bool) -> Path:
    """Score once (resumable), then select with ``method``; returns a copy of the subset."""
    from reasonsift.scoring.run_scoring import run_scoring
    from reasonsift.selection.run_selection import run_selection

    score = ScoreConfig(seed=seed, short_tokens=size.short_tokens, long_tokens=size.long_tokens,
                        num_isotropic=size.num_checkpoints, num_directional=size.num_checkpoints,
                        # a schedule tuned by hand for this θ₀, kept fixed so the recorded demo figures hold
                        noise="fixed", isotropic_std_start=0.015, isotropic_std_end=0.12, direction_model=str(theta_f),
                        min_radius=1.0, final_radius=10.0, full_loss=True, max_full_tokens=size.long_tokens,
                        shard_size=512)
    configs = {"data": DataConfig(), "model": ModelConfig(model=str(base)), "score": score,
               "select": SelectConfig(method=method, budget=max(1, int(size.budget_fraction * size.pool)), seed=seed)}
    if not (run / "scores.parquet").exists():
        run_scoring(str(pool), configs, run, command="reasonsift demo", progress=progress)
    run_selection(run, configs, command="reasonsift demo", progress=progress, data=str(pool))
    subset = run.parent / "subsets" / f"{method}.jsonl"
    subset.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(run / "selected.jsonl", subset)
    return subset


def _critical(subset: Path, judge: Path, run: Path, size: DemoSize, progress: bool) -> tuple[Path, dict[str, Any]]:
    """Critical tokens of a subset's own traces, judged by θ_f (CFT's cross-model identification:
    θ₀ solves too few problems to judge its own); traces whose final answer is wrong are dropped."""
    from reasonsift.config import CriticalConfig
    from reasonsift.critical.run_critical import run_critical

    cc = CriticalConfig(responses="dataset", answer_kind="text", rollout_extra_tokens=16, batch_size=64,
                        alternatives=size.critical_alternatives, max_response_tokens=size.critical_max_tokens)
    report = run_critical(str(subset), {"data": DataConfig(), "model": ModelConfig(model=str(judge)), "critical": cc},
                          run, command="reasonsift demo", progress=progress)
    return run / "critical.jsonl", report


def subset_truth(subset: Path) -> dict[str, float]:
    """Ground-truth composition of a subset (the selector never saw these columns)."""
    rows = [json.loads(x) for x in subset.read_text().splitlines()]
    return {"n": len(rows), "mean_true_difficulty": float(np.mean([r["true_difficulty"] for r in rows])),
            "low_quality_share": float(np.mean([r["low_quality"] for r in rows])),
            "families": len({r["source"] for r in rows})}


def accuracy_table(results: list[dict[str, Any]], bench_rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Accuracy overall, per family and per true difficulty."""
    meta = {r["id"]: r for r in bench_rows}
    by_family: dict[str, list[bool]] = {}
    by_steps: dict[int, list[bool]] = {}
    for r in results:
        ok = bool(r["correct"][0])
        by_family.setdefault(meta[r["id"]]["source"], []).append(ok)
        by_steps.setdefault(int(meta[r["id"]]["true_difficulty"]), []).append(ok)
    return {"accuracy": float(np.mean([r["correct"][0] for r in results])),
            "by_family": {k: float(np.mean(v)) for k, v in sorted(by_family.items())},
            "by_difficulty": {str(k): float(np.mean(v)) for k, v in sorted(by_steps.items())}}


def run_demo(out: str | Path = "runs/demo", quick: bool = False, seed: int = 0, progress: bool = True,
             methods: tuple[str, ...] = ("temp", "random"), size: DemoSize | None = None) -> dict[str, Any]:
    """Run the demo end to end; returns the results also written to ``OUT/demo_results.json``.

    ``methods`` are selection methods of ``reasonsift select``, plus ``full`` (the whole pool) and
    ``cft`` (the random subset, critical tokens judged by θ_f, trained with ``--objective cft``).
    ``size`` overrides the preset that ``quick`` picks (QUICK or FULL).
    """
    start = time.time()
    known = set(typing.get_args(typing.get_type_hints(SelectConfig)["method"])) | {"full", "cft"}
    unknown = [m for m in methods if m not in known]
    if unknown or not set(methods) - {"full"}:
        raise ValueError(f"demo methods: {', '.join(unknown) or 'full alone'} not possible; choose from "
                         f"{', '.join(sorted(known))} (at least one besides full: the report needs a scored pool)")
    size = size or (QUICK if quick else FULL)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = lambda what: logger.info("[demo %5.0fs] %s", time.time() - start, what)  # noqa: E731
    stamp("building θ₀ (cached after the first run)")
    base = build_base_model(size.base, progress)
    pool_rows = generate_pool(size.pool, seed)
    pool = write_jsonl(pool_rows, out / "pool.jsonl")
    bench_rows = generate_eval(size.eval_per_cell, seed + 1, exclude_prompts={r["prompt"] for r in pool_rows})
    bench = write_jsonl(bench_rows, out / "eval.jsonl")
    stamp(f"pool of {len(pool_rows)} traces, {len(bench_rows)} held-out problems; fine-tuning θ_f on the pool")
    theta_f = _train(pool, base, out / "models" / "theta_f", size.theta_f_epochs, seed, size, progress)
    results: dict[str, Any] = {"size": dataclasses.asdict(size), "seed": seed, "methods": {}}
    for method in sorted(methods, key=lambda m: m == "temp"):  # TEMP last: the run folder shows its selection
        stamp(f"curating with {method}")
        # "full" is θ_f itself: θ₀ trained on the whole pool for as many example-passes as each
        # subset gets (theta_f_epochs * pool = subset_epochs * budget), the full-data reference.
        extra: dict[str, Any] = {}
        if method == "full":
            subset, model = pool, theta_f
        elif method == "cft":
            # The random subset (the same rows as "random"), trained with loss on critical tokens only.
            sampled = _curate(pool, base, theta_f, out / "run", size, "random", seed, progress)
            stamp("finding critical tokens of the random subset (judged by θ_f)")
            subset, report = _critical(sampled, theta_f, out / "critical", size, progress)
            extra = {"critical_share": report["critical_share"], "rollouts": report["rollouts"]}
            stamp("training on the critical tokens")
            model = _train(subset, base, out / "models" / method, size.subset_epochs, seed, size, progress, "cft")
        else:
            subset = _curate(pool, base, theta_f, out / "run", size, method, seed, progress)
            stamp(f"training on the {method} subset")
            model = _train(subset, base, out / "models" / method, size.subset_epochs, seed, size, progress)
        stamp(f"evaluating the {method} model")
        res = _evaluate(model, bench, size, progress)
        results["methods"][method] = {**subset_truth(subset), **accuracy_table(res, bench_rows), **extra}
    stamp("evaluating θ₀ itself")
    base_eval = _evaluate(base, bench, size, progress, out / "models" / "theta_0" / "eval")
    results["base_accuracy"] = accuracy_table(base_eval, bench_rows)["accuracy"]
    results["validation"] = validate_scores(pq.read_table(out / "run" / "scores.parquet").to_pandas(), pool_rows)
    results["tokens"] = json.loads((out / "run" / "report.json").read_text())["tokens"]
    results["wall_time_s"] = round(time.time() - start, 1)
    (out / "demo_results.json").write_text(json.dumps(results, indent=2))
    from reasonsift.synth.report import write_demo_report

    write_demo_report(results, pq.read_table(out / "run" / "scores.parquet").to_pandas(), pool_rows,
                      out / "demo_report.html")
    print(format_table(results))
    print(f"report: {out / 'demo_report.html'}  (run folder: {out / 'run'})")
    return results


def validate_scores(scores: Any, pool_rows: list[dict[str, Any]]) -> dict[str, float]:
    """Check TEMP's claims against ground truth: difficulty signal and cluster/family agreement."""
    from scipy.stats import spearmanr
    from sklearn.metrics import normalized_mutual_info_score

    truth = {r["id"]: r for r in pool_rows}
    steps = np.array([truth[i]["true_difficulty"] for i in scores["id"]])
    family = [truth[i]["source"] for i in scores["id"]]
    out = {
        "spearman_difficulty_early_window": float(spearmanr(scores["difficulty"], steps).statistic),
        "spearman_base_loss_early_window": float(spearmanr(scores["base_loss_100"], steps).statistic),
        "spearman_full_trace_loss": float(spearmanr(scores["full_loss"], steps).statistic),
    }
    from reasonsift.selection.kmeans import kmeans

    vectors = np.stack(scores["loss_1000"].to_numpy())
    labels, _ = kmeans(vectors, len(set(family)), seed=0)
    out["nmi_loss_vector_clusters_vs_families"] = float(normalized_mutual_info_score(family, labels))
    return out


def format_table(results: dict[str, Any]) -> str:
    """The results table printed at the end of the demo."""
    lines = [f"{'method':<10} {'n':>5} {'acc':>6} {'low-q':>6} {'steps':>6}  accuracy by difficulty 1..6",
             "-" * 78]
    for m, r in results["methods"].items():
        by = " ".join(f"{v:.2f}" for v in r["by_difficulty"].values())
        lines.append(f"{m:<10} {r['n']:>5} {r['accuracy']:>6.3f} {r['low_quality_share']:>6.2f} "
                     f"{r['mean_true_difficulty']:>6.2f}  {by}")
    lines.append(f"θ₀ (no SFT) accuracy: {results['base_accuracy']:.3f}")
    v = results["validation"]
    lines.append(f"Spearman(θ_rnd early-window loss, true steps) = {v['spearman_difficulty_early_window']:.3f}; "
                 f"Spearman(full-trace loss, true steps) = {v['spearman_full_trace_loss']:.3f}; "
                 f"NMI(loss-vector clusters, families) = {v['nmi_loss_vector_clusters_vs_families']:.3f}")
    return "\n".join(lines)
