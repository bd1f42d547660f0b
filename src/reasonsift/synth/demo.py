"""``reasonsift demo``: the whole pipeline on the synthetic world, on a CPU, in minutes.

``world="v1"`` (the default) is the first, character-level world (issue 5's table);
``world="v2"`` the miniature of the paper's regime (docs/synth-world-v2.md: word tokens, long
traces, four sources, latent capability in θ₀), the default once it is validated (issue 14).

1. load θ₀ (shipped in the package; built and cached for other recipes), a tiny model pretrained on
   the world's facts and (v2) whole problems solved in a terse form;
2. generate a pool of traces (v2: four families, 1-16 steps, four sources, some low-quality) and
   held-out problems;
3. θ_f = θ₀ fine-tuned on the whole pool (as the paper does for M23K); the directional radii are
   set relative to ‖θ_f − θ₀‖ (v2);
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
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from reasonsift.config import WORLDS, DataConfig, ModelConfig, ScoreConfig, SelectConfig
from reasonsift.synth.generate import generate_eval, generate_pool, write_jsonl
from reasonsift.synth.demo_presets import PRESETS, DemoSize, sft_recipe
from reasonsift.synth.world import build_base_model

logger = logging.getLogger(__name__)


def _train(data: Path, base: Path, out: Path, epochs: float, seed: int, size: DemoSize, progress: bool,
           objective: str = "sft") -> Path:
    """Full fine-tune of θ₀ with the demo's recipe (SFT, or CFT on a file with critical masks)."""
    from reasonsift.training.run_training import run_training

    if (out / "model.safetensors").exists():
        return out
    train = sft_recipe(size, epochs, seed, objective)
    run_training(str(data), {"data": DataConfig(), "model": ModelConfig(model=str(base)), "train": train},
                 out, command="reasonsift demo", progress=progress, log_lines=False)
    return out


def _evaluate(model: Path, bench: Path, size: DemoSize, progress: bool, out: Path | None = None) -> list[dict[str, Any]]:
    """Evaluate into ``out`` (default MODEL/eval; θ₀ passes a folder of the demo: it may be the package's)."""
    from reasonsift.config import EvalConfig
    from reasonsift.evaluation.run_evaluation import run_evaluation

    out = out or model / "eval"
    cfg = EvalConfig(max_new_tokens=size.max_new_tokens, batch_size=size.eval_batch_size, answer_kind="text")
    run_evaluation(str(model), str(bench), {"evaluate": cfg, "model": ModelConfig(model=str(model))},
                   out, command="reasonsift demo", progress=progress)
    return [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]


def direction_norm(base: Path, target: Path) -> float:
    """‖θ_f − θ₀‖ over every floating-point weight (what TEMP's directional radii are measured against)."""
    from safetensors.torch import load_file

    a, b = load_file(str(base / "model.safetensors")), load_file(str(target / "model.safetensors"))
    return float(sum(((b[k].double() - a[k].double()) ** 2).sum() for k in a if a[k].is_floating_point()) ** 0.5)


def score_config(size: DemoSize, seed: int, theta_f: Path, radii: tuple[float, float]) -> ScoreConfig:
    """The demo's TEMP scoring config: the world's windows, noise and the given directional radii."""
    return ScoreConfig(seed=seed, short_tokens=size.short_tokens, long_tokens=size.long_tokens,
                       num_isotropic=size.num_checkpoints, num_directional=size.num_checkpoints, noise=size.noise,
                       isotropic_std_start=size.isotropic_std[0], isotropic_std_end=size.isotropic_std[1],
                       calibration_examples=min(64, max(8, size.pool // 4)),
                       direction_model=str(theta_f), min_radius=radii[0], final_radius=radii[1], full_loss=True,
                       max_full_tokens=size.max_full_tokens, shard_size=512)


def _curate(pool: Path, base: Path, theta_f: Path, run: Path, subsets: Path, size: DemoSize, method: str,
            seed: int, score_seed: int, radii: tuple[float, float], progress: bool) -> Path:
    """Score once (resumable; ``score_seed``), then select with ``method`` (``seed``); returns a copy of the subset."""
    from reasonsift.scoring.run_scoring import run_scoring
    from reasonsift.selection.run_selection import run_selection

    configs = {"data": DataConfig(), "model": ModelConfig(model=str(base)),
               "score": score_config(size, score_seed, theta_f, radii),
               "select": SelectConfig(method=method, budget=max(1, int(size.budget_fraction * size.pool)), seed=seed)}
    if not (run / "scores.parquet").exists():
        run_scoring(str(pool), configs, run, command="reasonsift demo", progress=progress)
    run_selection(run, configs, command="reasonsift demo", progress=progress, data=str(pool))
    subset = subsets / f"{method}.jsonl"
    subset.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(run / "selected.jsonl", subset)
    return subset


def _critical(subset: Path, judge: Path, run: Path, size: DemoSize, method: str,
              progress: bool) -> tuple[Path, dict[str, Any]]:
    """Critical tokens of a subset's own traces, judged by θ_f (CFT's cross-model identification:
    θ₀ solves too few problems to judge its own); traces whose final answer is wrong are dropped.
    ``method``: counterfactual (CFT) or numbers (the near-free approximation)."""
    from reasonsift.config import CriticalConfig
    from reasonsift.critical.run_critical import run_critical

    cc = CriticalConfig(responses="dataset", answer_kind="text", rollout_extra_tokens=16, batch_size=64,
                        alternatives=size.critical_alternatives, method=method,
                        # only counterfactual rollouts cost length²; a numbers mask covers every trace SFT sees
                        max_response_tokens=size.critical_max_tokens if method == "counterfactual" else size.max_length)
    report = run_critical(str(subset), {"data": DataConfig(), "model": ModelConfig(model=str(judge)), "critical": cc},
                          run, command="reasonsift demo", progress=progress)
    return run / "critical.jsonl", report


def subset_truth(subset: Path) -> dict[str, Any]:
    """Ground-truth composition of a subset (the selector never saw these columns)."""
    rows = [json.loads(x) for x in subset.read_text().splitlines()]
    kinds = Counter(r["low_quality_kind"] for r in rows if r["low_quality"])
    return {"n": len(rows), "mean_true_difficulty": float(np.mean([r["true_difficulty"] for r in rows])),
            "low_quality_share": float(np.mean([r["low_quality"] for r in rows])),
            "low_quality_kinds": {k: v / len(rows) for k, v in sorted(kinds.items())},
            "families": len({r.get("family", r["source"]) for r in rows}),
            "sources": dict(sorted(Counter(r["source"] for r in rows).items()))}


def accuracy_table(results: list[dict[str, Any]], bench_rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Accuracy overall, per family and per true difficulty."""
    meta = {r["id"]: r for r in bench_rows}
    by_family: dict[str, list[bool]] = {}
    by_steps: dict[int, list[bool]] = {}
    for r in results:
        ok = bool(r["correct"][0])
        row = meta[r["id"]]
        by_family.setdefault(row.get("family", row["source"]), []).append(ok)
        by_steps.setdefault(int(row["true_difficulty"]), []).append(ok)
    return {"accuracy": float(np.mean([r["correct"][0] for r in results])),
            "by_family": {k: float(np.mean(v)) for k, v in sorted(by_family.items())},
            "by_difficulty": {str(k): float(np.mean(v)) for k, v in sorted(by_steps.items())}}


def world_data(size: DemoSize, seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The pool and the held-out problems of ``size.world`` for a world seed (disjoint prompts)."""
    make_pool, make_eval = generate_pool, generate_eval
    if size.world == "v2":
        from reasonsift.synth.v2.generate import generate_eval as make_eval, generate_pool as make_pool
    pool_rows = make_pool(size.pool, seed)
    return pool_rows, make_eval(size.eval_per_cell, seed + 1, exclude_prompts={r["prompt"] for r in pool_rows})


def check_methods(methods: tuple[str, ...]) -> None:
    """Refuse unknown demo methods before any work (ValueError naming them and the choices)."""
    known = set(typing.get_args(typing.get_type_hints(SelectConfig)["method"])) | {"full", "cft", "cft-numbers"}
    unknown = [m for m in methods if m not in known]
    if unknown or not set(methods) - {"full"}:
        raise ValueError(f"demo methods: {', '.join(unknown) or 'full alone'} not possible; choose from "
                         f"{', '.join(sorted(known))} (at least one besides full: the report needs a scored pool)")


def run_demo(out: str | Path = "runs/demo", quick: bool = False, seed: int = 0, progress: bool = True,
             methods: tuple[str, ...] = ("temp", "random"), size: DemoSize | None = None, world: str = "v1",
             shared: str | Path | None = None, world_seed: int | None = None) -> dict[str, Any]:
    """Run the demo end to end; returns the results also written to ``OUT/demo_results.json``.

    ``methods`` are selection methods of ``reasonsift select``, plus ``full`` (the whole pool),
    ``cft`` (the random subset, critical tokens judged by θ_f, trained with ``--objective cft``) and
    ``cft-numbers`` (the same with ``critical.method=numbers`` masks, CFT's near-free approximation).
    ``size`` overrides the preset that ``world`` and ``quick`` pick. ``seed`` seeds every selection
    and SFT run. The world (pool, held-out set), θ_f and the TEMP scores come from ``world_seed``
    (default: ``seed``) and live in ``shared`` (default: OUT), so several seeds can share one pool
    and one scoring run, as the paper's seeds share M23K.
    """
    start = time.time()
    check_methods(methods)
    if world not in WORLDS:
        raise ValueError(f"world must be one of {', '.join(WORLDS)}, got {world!r}")
    size = size or PRESETS[(world, quick)]
    if size.base.world != size.world:
        raise ValueError(f"DemoSize.world is {size.world} but its θ₀ recipe is world {size.base.world}'s")
    world_seed = seed if world_seed is None else world_seed
    out = Path(out)
    shared = Path(shared) if shared is not None else out
    out.mkdir(parents=True, exist_ok=True)
    stamp = lambda what: logger.info("[demo %5.0fs] %s", time.time() - start, what)  # noqa: E731
    stamp(f"world {size.world}: building θ₀ (shipped in the package; built and cached for other recipes)")
    base = build_base_model(size.base, progress)
    pool_rows, bench_rows = world_data(size, world_seed)
    pool = write_jsonl(pool_rows, shared / "pool.jsonl")
    bench = write_jsonl(bench_rows, shared / "eval.jsonl")
    stamp(f"pool of {len(pool_rows)} traces, {len(bench_rows)} held-out problems; fine-tuning θ_f on the pool")
    theta_f = _train(pool, base, shared / "models" / "theta_f", size.theta_f_epochs, world_seed, size, progress)
    distance = direction_norm(base, theta_f)
    radii = ((size.relative_radii[0] * distance, size.relative_radii[1] * distance) if size.relative_radii
             else size.radii)
    results: dict[str, Any] = {"size": dataclasses.asdict(size), "seed": seed, "world_seed": world_seed,
                               "theta_f_distance": distance, "radii": list(radii), "methods": {}}
    run = shared / "run"
    for method in sorted(methods, key=lambda m: m == "temp"):  # TEMP last: the run folder shows its selection
        stamp(f"curating with {method}")
        extra: dict[str, Any] = {}
        if method == "full":
            # θ_f is θ₀ trained on the whole pool with the subsets' recipe; another seed trains it again.
            subset = pool
            model = theta_f if seed == world_seed else _train(pool, base, out / "models" / "full",
                                                               size.theta_f_epochs, seed, size, progress)
        elif method in ("cft", "cft-numbers"):
            # The random subset (the same rows as "random"), trained with loss on critical tokens only.
            sampled = _curate(pool, base, theta_f, run, out / "subsets", size, "random", seed, world_seed, radii,
                              progress)
            how = "numbers" if method == "cft-numbers" else "counterfactual"
            stamp(f"finding critical tokens of the random subset ({how}; judged by θ_f)")
            subset, report = _critical(sampled, theta_f, out / method.replace("cft", "critical"), size, how,
                                       progress)
            extra = {"critical_share": report["critical_share"], "rollouts": report.get("rollouts", 0)}
            stamp("training on the critical tokens")
            model = _train(subset, base, out / "models" / method, size.subset_epochs, seed, size, progress, "cft")
        else:
            subset = _curate(pool, base, theta_f, run, out / "subsets", size, method, seed, world_seed, radii,
                             progress)
            stamp(f"training on the {method} subset")
            model = _train(subset, base, out / "models" / method, size.subset_epochs, seed, size, progress)
        stamp(f"evaluating the {method} model")
        res = _evaluate(model, bench, size, progress, None if model != theta_f or shared == out
                        else out / "models" / "full" / "eval")
        results["methods"][method] = {**subset_truth(subset), **accuracy_table(res, bench_rows), **extra}
    stamp("evaluating θ₀ itself")
    base_eval = _evaluate(base, bench, size, progress, shared / "models" / "theta_0" / "eval")
    results["base_accuracy"] = accuracy_table(base_eval, bench_rows)["accuracy"]
    scores = pq.read_table(run / "scores.parquet").to_pandas()
    results["validation"] = validate_scores(scores, pool_rows)
    report = json.loads((run / "report.json").read_text())
    results["tokens"] = report["tokens"]
    results["theta_rnd"] = report.get("theta_rnd")
    results["properties"] = world_properties(pool_rows, base, size)
    results["wall_time_s"] = round(time.time() - start, 1)
    (out / "demo_results.json").write_text(json.dumps(results, indent=2))
    from reasonsift.synth.report import write_demo_report

    write_demo_report(results, scores, pool_rows, out / "demo_report.html")
    print(format_table(results))
    print(f"report: {out / 'demo_report.html'}  (run folder: {run})")
    return results


def world_properties(pool_rows: list[dict[str, Any]], base: Path, size: DemoSize) -> dict[str, float]:
    """Trace lengths in θ₀'s tokens: median, the early window's share of it, share beyond the long window."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(base))
    lengths = np.array([len(tok(r["response"], add_special_tokens=False)["input_ids"]) for r in pool_rows])
    return {"median_trace_tokens": float(np.median(lengths)), "mean_trace_tokens": float(lengths.mean()),
            "max_trace_tokens": int(lengths.max()),
            "window_share": size.short_tokens / float(np.median(lengths)),
            "share_beyond_long_window": float((lengths > size.long_tokens).mean()),
            "low_quality_share": float(np.mean([r["low_quality"] for r in pool_rows]))}


def validate_scores(scores: Any, pool_rows: list[dict[str, Any]]) -> dict[str, float]:
    """Check TEMP's claims against ground truth: difficulty signal and cluster/family agreement."""
    from scipy.stats import spearmanr
    from sklearn.metrics import normalized_mutual_info_score

    truth = {r["id"]: r for r in pool_rows}
    steps = np.array([truth[i]["true_difficulty"] for i in scores["id"]])
    family = [truth[i].get("family", truth[i]["source"]) for i in scores["id"]]
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
    """The results table printed at the end of the demo, and one or two sentences on what it shows."""
    steps = list(next(iter(results["methods"].values()))["by_difficulty"])
    lines = [f"{'method':<12} {'n':>5} {'acc':>6} {'low-q':>6} {'steps':>6}  accuracy by difficulty "
             f"{steps[0]}..{steps[-1]}", "-" * 90]
    for m, r in results["methods"].items():
        by = " ".join(f"{v:.2f}" for v in r["by_difficulty"].values())
        lines.append(f"{m:<12} {r['n']:>5} {r['accuracy']:>6.3f} {r['low_quality_share']:>6.2f} "
                     f"{r['mean_true_difficulty']:>6.2f}  {by}")
    lines.append(f"θ₀ (no SFT) accuracy: {results['base_accuracy']:.3f}")
    v = results["validation"]
    lines.append(f"Spearman(θ_rnd early-window loss, true steps) = {v['spearman_difficulty_early_window']:.3f}; "
                 f"Spearman(full-trace loss, true steps) = {v['spearman_full_trace_loss']:.3f}; "
                 f"NMI(loss-vector clusters, families) = {v['nmi_loss_vector_clusters_vs_families']:.3f}")
    lines.append(summary_sentence(results))
    return "\n".join(lines)


def summary_sentence(results: dict[str, Any]) -> str:
    """What the table shows, in words, whichever way it came out."""
    m = results["methods"]
    if "temp" not in m or "random" not in m:
        return ""
    t, r = m["temp"]["accuracy"], m["random"]["accuracy"]
    gap = t - r
    verdict = (f"TEMP's subset beat the random one by {gap * 100:.1f} points" if gap > 0 else
               f"TEMP's subset scored {-gap * 100:.1f} points below the random one" if gap < 0 else
               "TEMP's and the random subset tied")
    text = (f"{verdict} ({t:.3f} vs {r:.3f}) on one seed; "
            f"TEMP took {m['temp']['low_quality_share']:.0%} low-quality traces and {m['temp']['mean_true_difficulty']:.1f} "
            f"steps on average (random: {m['random']['low_quality_share']:.0%}, {m['random']['mean_true_difficulty']:.1f}).")
    if "full" in m:
        text += f" The whole pool reached {m['full']['accuracy']:.3f}."
    return text + (" This is one seed: it repeats bit for bit on the same machine, but another CPU can round"
                   " differently and move a subset's accuracy by a few points; BENCHMARKS.md gives the"
                   " seed-to-seed spread, and benchmarks/synthetic_validation.py measures it.")
