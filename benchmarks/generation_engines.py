"""HF vs vLLM on the same model and data, in one run: speed and agreement of critical and evaluate.

Run it in the vLLM environment (``bash scripts/setup_vllm.sh``)::

    .venv-vllm/bin/python benchmarks/generation_engines.py --model MODEL_DIR \\
        [--critical-rows 4] [--eval-items 16] [--batch-invariant]

MODEL_DIR: any Llama/Qwen-style folder vLLM accepts (head_dim ≥ 32 on CPU), e.g. SmolLM2-135M-Instruct
made by scripts/real_model.py. Data: GSM8K train rows (critical; the references by default, or the
model's greedy solutions with ``--responses greedy``) and GSM8K
items (evaluate, greedy; train rows 1000+, as ../shared/data has no test split) from ../shared/data. Printed per stage and engine: wall time, decoded
tokens, tokens/s; then the vllm/hf speed ratio and the agreement between engines: identical greedy
solutions, identical critical masks (over solutions both engines kept), identical evaluation verdicts.
``--batch-invariant`` sets ``VLLM_BATCH_INVARIANT=1`` (vLLM's batch-invariant kernels, where the
platform has them) before vLLM is imported. Wall times include the model load (vLLM: engine start).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k"


def _rows(path: Path, n: int, skip: int = 0) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [line for i, line in zip(range(skip + n), f) if i >= skip]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--critical-rows", type=int, default=4)
    p.add_argument("--eval-items", type=int, default=16)
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--max-response-tokens", type=int, default=160, help="critical: longer solutions are skipped")
    p.add_argument("--extra-tokens", type=int, default=16, help="critical.rollout_extra_tokens")
    p.add_argument("--responses", default="dataset", choices=("dataset", "greedy"),
                   help="critical.responses: dataset (GSM8K's references; a small model solves few rows greedily)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-invariant", action="store_true")
    args = p.parse_args()
    if args.batch_invariant:
        os.environ["VLLM_BATCH_INVARIANT"] = "1"
    import torch

    from reasonsift.config import load_config
    from reasonsift.critical.run_critical import run_critical
    from reasonsift.evaluation.run_evaluation import run_evaluation

    with tempfile.TemporaryDirectory() as tmp:
        train, test = Path(tmp) / "train.jsonl", Path(tmp) / "test.jsonl"
        train.write_text("".join(_rows(SHARED / "train.jsonl", args.critical_rows)))
        test.write_text("".join(_rows(SHARED / "train.jsonl", args.eval_items, skip=1000)))  # no GSM8K test here
        res: dict[str, dict] = {}
        for engine in ("hf", "vllm"):
            configs = load_config(["data", "model", "critical"], None, [
                f"model.model={args.model}", f"model.device={args.device}", f"critical.engine={engine}",
                f"critical.max_new_tokens={args.max_new_tokens}", f"critical.max_response_tokens={args.max_response_tokens}",
                f"critical.rollout_extra_tokens={args.extra_tokens}", "critical.answer_kind=math",
                f"critical.responses={args.responses}"])
            run = Path(tmp) / f"critical-{engine}"
            start = time.perf_counter()
            report = run_critical(str(train), configs, run, "benchmark", progress=False)
            crit_s = time.perf_counter() - start
            kept = [json.loads(x) for x in (run / "critical.jsonl").read_text().splitlines()]
            rows = {r.get("id") or r.get("question") or json.dumps(r, sort_keys=True)[:200]: r for r in kept}  # GSM8K has no id
            configs = load_config(["model", "evaluate"], None, [
                f"model.device={args.device}", f"evaluate.engine={engine}", f"evaluate.max_new_tokens={args.max_new_tokens}"])
            start = time.perf_counter()
            metrics = run_evaluation(args.model, str(test), configs, Path(tmp) / f"eval-{engine}", "benchmark",
                                     progress=False)
            eval_s = time.perf_counter() - start
            items = [json.loads(x) for x in (Path(tmp) / f"eval-{engine}" / "results.jsonl").read_text().splitlines()]
            res[engine] = {"critical_s": crit_s, "report": report, "rows": rows, "eval_s": eval_s,
                           "metrics": metrics, "items": items}
    print(f"model {args.model}; device {args.device}; torch {torch.__version__}; "
          f"VLLM_BATCH_INVARIANT={os.environ.get('VLLM_BATCH_INVARIANT', '0')}; {os.cpu_count()} CPUs")
    print(f"{'stage':<10}{'engine':<7}{'wall s':>9}{'decoded':>10}{'tok/s':>9}  result")
    for engine, r in res.items():
        rep = r["report"]
        print(f"{'critical':<10}{engine:<7}{r['critical_s']:>9.1f}{rep['decoded_tokens']:>10,}"
              f"{rep['decoded_tokens'] / r['critical_s']:>9.1f}  kept {rep['counts']['kept']}/{rep['counts']['rows']}, "
              f"{rep['rollouts']} rollouts, {100 * rep['critical_share']:.1f}% critical")
    for engine, r in res.items():
        gen_tokens = sum(len(g) for it in r["items"] for g in it["generations"])  # characters, see below
        print(f"{'evaluate':<10}{engine:<7}{r['eval_s']:>9.1f}{'':>10}{'':>9}  accuracy {r['metrics']['accuracy']:.3f} "
              f"over {r['metrics']['n_items']} items ({gen_tokens:,} characters generated)")
    hf, vl = res["hf"], res["vllm"]
    print(f"speed vllm/hf: critical {hf['critical_s'] / vl['critical_s']:.2f}x, evaluate {hf['eval_s'] / vl['eval_s']:.2f}x "
          "(wall, model load included)")
    both = sorted(set(hf["rows"]) & set(vl["rows"]))
    solution = lambda r: r.get("response", r.get("answer"))  # noqa: E731 - the solution column (GSM8K: answer)
    same_solution = sum(solution(hf["rows"][i]) == solution(vl["rows"][i]) for i in both)
    same_mask = sum(hf["rows"][i]["critical_mask"] == vl["rows"][i]["critical_mask"] for i in both)
    same_gen = sum(a["generations"] == b["generations"] for a, b in zip(hf["items"], vl["items"]))
    same_verdict = sum(a["correct"] == b["correct"] for a, b in zip(hf["items"], vl["items"]))
    n = len(hf["items"])
    print(f"agreement: kept by both {len(both)} (hf {len(hf['rows'])}, vllm {len(vl['rows'])}); identical greedy "
          f"solutions {same_solution}/{len(both)}; identical masks {same_mask}/{len(both)}; evaluate: identical "
          f"generations {same_gen}/{n}, identical verdicts {same_verdict}/{n}")


if __name__ == "__main__":  # vLLM starts worker processes, which re-import this file
    main()
