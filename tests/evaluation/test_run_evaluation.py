"""``reasonsift evaluate``: per-item results, an independently recounted accuracy, pass@k, resume rules.

Most tests replace ``generate`` with a stub that writes known right and wrong answers in the formats
models use, so accuracy is non-zero and its expected value is known without the code under test.
One test runs the real tiny model end to end.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from fractions import Fraction
from pathlib import Path
from typing import Callable

import pytest

import reasonsift.evaluation.run_evaluation as run_eval
from reasonsift.cli import main
from reasonsift.evaluation.answers import extract_answer, is_equivalent
from reasonsift.evaluation.generate import Generation
from tests.conftest import GSM8K_FIXTURE, gsm8k_lines, shared_data_or_skip
from tests.evaluation.conftest import gsm8k20_rows

QUIET = ["--quiet", "evaluate.max_new_tokens=24", "evaluate.batch_size=8"]


def _gold(row: dict) -> int:
    return int(row["answer"].split("####")[-1].strip().replace(",", ""))


# (generation for gold g, whether it is right): boxed, "####" with thousands commas, an "answer is"
# phrase, a fraction, a wrong box after the right number, an empty generation, an "=" chain, units.
FORMATS: list[tuple[Callable[[int], str], bool]] = [
    (lambda g: f"3 * 4 = 12 first.\nSo the total is $\\boxed{{{g}}}$.", True),
    (lambda g: f"Adding up the parts.\n#### {g:,}", True),
    (lambda g: f"The answer is {g:,} apples.", True),
    (lambda g: f"Half of {2 * g} is $\\boxed{{\\frac{{{2 * g}}}{{2}}}}$", True),
    (lambda g: f"I first thought {g}, but then \\boxed{{{2 * g + 1}}}", False),
    (lambda g: "", False),
    (lambda g: f"The answer is {g - 1} + 1 = {g} items.", True),
    (lambda g: f"So she has {g:,} dollars.\n#### {g:,}", True),
]


def _stub_generate(texts_for: Callable[[str, int], list[Generation]]) -> Callable:
    """A ``generate`` replacement: the question found in each rendered prompt -> its generations."""
    questions = {r["question"]: i for i, r in enumerate(gsm8k20_rows())}

    def fake(model, tokenizer, prompts, cfg, stops=None):
        out = []
        for prompt in prompts:
            index = next(i for q, i in questions.items() if q in prompt)
            gens = texts_for(prompt, index)
            assert len(gens) == cfg.samples
            out.append(gens)
        return out

    return fake


def _greedy_texts(prompt: str, index: int) -> list[Generation]:
    make, _ = FORMATS[index % len(FORMATS)]
    return [Generation(make(_gold(gsm8k20_rows()[index])), truncated=index == 5)]


def _value(pred: str) -> Fraction | None:
    """A prediction's value, parsed here without the package's equivalence checker."""
    frac = re.fullmatch(r"\\frac\{(\d+)\}\{(\d+)\}", pred or "")
    if frac:
        return Fraction(int(frac.group(1)), int(frac.group(2)))
    try:
        return Fraction(pred.replace(",", ""))
    except (AttributeError, ValueError):
        return None


def _rows(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]


def test_accuracy_matches_an_independent_recount(eval_model_dir, gsm8k20, tmp_path, monkeypatch):
    monkeypatch.setattr(run_eval, "generate", _stub_generate(_greedy_texts))
    out = tmp_path / "eval"
    assert main(["evaluate", "--model", str(eval_model_dir), "--benchmark", str(gsm8k20), "--out", str(out),
                 *QUIET]) == 0
    rows, metrics = _rows(out), json.loads((out / "metrics.json").read_text())
    golds = [_gold(r) for r in gsm8k20_rows()]
    assert [r["id"] for r in rows] == [str(i) for i in range(20)]
    assert [int(r["gold"]) for r in rows] == golds
    # The recount reads only gold and prediction strings, not the "correct" field under test.
    recount = [_value(r["predictions"][0]) == Fraction(int(r["gold"])) for r in rows]
    expected = [FORMATS[i % len(FORMATS)][1] for i in range(20)]
    assert recount == expected
    assert [r["correct"] for r in rows] == [[c] for c in expected]
    assert metrics["n_items"] == 20
    assert metrics["accuracy"] == pytest.approx(sum(recount) / 20) == pytest.approx(16 / 20)
    assert rows[15]["predictions"] == ["448000"]  # "#### 448,000"
    assert rows[6]["predictions"] == [str(golds[6])]  # "answer is 47 + 1 = 48": the result, not 47
    assert metrics["empty_generations"] == 2 and metrics["no_answer_extracted"] == 2  # items 5 and 13
    assert metrics["truncated_generations"] == 1 and rows[5]["truncated"] == [True]


def test_fraction_and_decimal_golds(eval_model_dir, tmp_path, monkeypatch):
    rows = [{"question": "Half of one?", "answer": "0.5"},
            {"question": "One over two?", "solution": "It is $\\boxed{\\frac{1}{2}}$."},
            {"question": "Ten hundreds?", "answer": "Count them.\n#### 1,000"}]
    bench = tmp_path / "mixed.jsonl"
    bench.write_text("".join(json.dumps(r) + "\n" for r in rows))
    answers = {"Half of one?": "so \\boxed{\\frac{1}{2}}", "One over two?": "#### 0.5",
               "Ten hundreds?": "The answer is 1000."}

    def fake(model, tokenizer, prompts, cfg, stops=None):
        return [[Generation(next(a for q, a in answers.items() if q in p), False)] for p in prompts]

    monkeypatch.setattr(run_eval, "generate", fake)
    out = tmp_path / "eval"
    assert main(["evaluate", "--model", str(eval_model_dir), "--benchmark", str(bench), "--out", str(out),
                 *QUIET]) == 0
    got = _rows(out)
    assert [r["predictions"][0] for r in got] == ["\\frac{1}{2}", "0.5", "1000"]
    assert all(r["correct"] == [True] for r in got)
    assert json.loads((out / "metrics.json").read_text())["accuracy"] == 1.0


def test_real_tiny_model_end_to_end(eval_model_dir, gsm8k20, tmp_path):
    out = tmp_path / "eval"
    args = ["evaluate", "--model", str(eval_model_dir), "--benchmark", str(gsm8k20), "--out", str(out), *QUIET]
    assert main(args) == 0
    rows, metrics = _rows(out), json.loads((out / "metrics.json").read_text())
    assert len(rows) == 20 and metrics["n_items"] == 20
    assert all(len(r[k]) == 1 for r in rows for k in ("generations", "predictions", "correct", "truncated"))
    # Recount from the generations themselves: extraction and equivalence redone here.
    recount = [is_equivalent(extract_answer(r["generations"][0], r["kind"]), str(_gold(g)), r["kind"])
               for r, g in zip(rows, gsm8k20_rows())]
    assert [r["correct"][0] for r in rows] == recount
    assert metrics["accuracy"] == pytest.approx(sum(recount) / 20)
    assert metrics["truncated_generations"] == sum(r["truncated"][0] for r in rows)
    assert json.loads((out / run_eval.MANIFEST).read_text())["settings"]["evaluate.max_new_tokens"] == 24
    # An interrupted evaluation resumes: drop the last 5 results and leave a half-written line.
    lines = (out / "results.jsonl").read_text().splitlines()
    (out / "results.jsonl").write_text("\n".join(lines[:15]) + "\n" + lines[15][:20])
    assert main(args) == 0
    again = _rows(out)  # every line parses: the half line was cut, not glued to the next row
    assert [r["id"] for r in again] == [r["id"] for r in rows]
    assert json.loads((out / "metrics.json").read_text())["accuracy"] == metrics["accuracy"]


def test_pass_at_k_includes_k_equal_samples_and_counts(eval_model_dir, gsm8k20, tmp_path, monkeypatch):
    # 3 samples per item; item i has (i % 4) right ones, capped at 3; item 0's first sample is empty.
    def texts(prompt: str, index: int) -> list[Generation]:
        g = _gold(gsm8k20_rows()[index])
        right = min(index % 4, 3)
        gens = [Generation(f"#### {g}" if s < right else f"#### {g + 1}", truncated=s == 2) for s in range(3)]
        return [Generation("", True), *gens[1:]] if index == 0 else gens

    monkeypatch.setattr(run_eval, "generate", _stub_generate(texts))
    out = tmp_path / "eval"
    assert main(["evaluate", "--model", str(eval_model_dir), "--benchmark", str(gsm8k20), "--out", str(out),
                 "--samples", "3", *QUIET, "evaluate.temperature=1.0"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    counts = [min(i % 4, 3) for i in range(20)]  # c per item, n = 3

    def estimator(n: int, c: int, k: int) -> float:  # 1 - C(n-c, k) / C(n, k), Chen et al. 2021
        return 1 - math.comb(n - c, k) / math.comb(n, k)

    for k in (1, 2, 3):
        assert metrics[f"pass@{k}"] == pytest.approx(sum(estimator(3, c, k) for c in counts) / 20), k
    assert "pass@4" not in metrics
    assert metrics["pass@3"] == pytest.approx(15 / 20)  # every item with c > 0
    assert metrics["empty_generations"] == 1
    assert metrics["truncated_generations"] == 20 + 1  # sample 2 of every item, and item 0's empty sample 0
    assert metrics["samples"] == 3


def test_resume_refuses_results_of_another_evaluation(eval_model_dir, gsm8k20, tmp_path, monkeypatch, capsys):
    def texts(prompt: str, index: int) -> list[Generation]:
        g = _gold(gsm8k20_rows()[index])
        return [Generation(f"#### {g}", False)] + [Generation(f"#### {g + 1}", False)] * (samples - 1)

    monkeypatch.setattr(run_eval, "generate", _stub_generate(texts))
    out = tmp_path / "eval"
    base = ["evaluate", "--model", str(eval_model_dir), "--benchmark", str(gsm8k20), "--out", str(out), "--quiet"]
    samples = 4
    assert main([*base, "--samples", "4", "evaluate.temperature=1.0"]) == 0
    before = (out / "results.jsonl").read_text()
    # The audit's case: a greedy run into the folder of a sampled one must not reuse its generations.
    samples = 1
    assert main(base) == 2
    err = capsys.readouterr().err
    assert "another evaluation" in err and "evaluate.samples 4 -> 1" in err and "evaluate.temperature" in err
    assert len(err.strip().splitlines()) == 1
    assert (out / "results.jsonl").read_text() == before
    # Batch size and limit change speed or coverage, not any item's result: resuming is fine.
    samples = 4
    assert main([*base, "--samples", "4", "evaluate.temperature=1.0", "evaluate.batch_size=3", "--limit", "5"]) == 0
    assert json.loads((out / "metrics.json").read_text())["n_items"] == 5
    # Another max_new_tokens, an edited benchmark, or retrained weights are other evaluations.
    assert main([*base, "--samples", "4", "evaluate.temperature=1.0", "evaluate.max_new_tokens=7"]) == 2
    assert "evaluate.max_new_tokens" in capsys.readouterr().err
    gsm8k20.write_text(gsm8k20.read_text().replace("<<48/2=24>>", "<<48 / 2=24>>"))  # same golds
    assert main([*base, "--samples", "4", "evaluate.temperature=1.0"]) == 2
    assert "benchmark" in capsys.readouterr().err
    model, samples = tmp_path / "model", 1
    shutil.copytree(eval_model_dir, model)
    other = ["evaluate", "--model", str(model), "--benchmark", str(gsm8k20), "--out", str(tmp_path / "m"), "--quiet"]
    assert main(other) == 0
    weights = model / "model.safetensors"
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    assert main(other) == 2
    assert "model" in capsys.readouterr().err
    # Results from before manifests existed cannot be checked, so they are not reused either.
    (tmp_path / "m" / run_eval.MANIFEST).unlink()
    assert main(other) == 2
    assert f"no {run_eval.MANIFEST}" in capsys.readouterr().err


def test_default_out_folder_is_unique_per_benchmark_file(eval_model_dir, tmp_path, monkeypatch):
    # GSM8K and MATH both ship train.jsonl / test.jsonl: the default folder must tell them apart.
    monkeypatch.setattr(run_eval, "generate", lambda m, t, prompts, cfg, stops=None:
                        [[Generation("\\boxed{4}", False)] for _ in prompts])
    model = tmp_path / "model"
    shutil.copytree(eval_model_dir, model)
    gsm8k, math_ = tmp_path / "gsm8k" / "test.jsonl", tmp_path / "math" / "test.jsonl"
    gsm8k.parent.mkdir()
    math_.parent.mkdir()
    gsm8k.write_text(gsm8k_lines(1)[0])
    math_.write_text(json.dumps({"problem": "2+2?", "solution": "$\\boxed{4}$", "unique_id": "test/a/1.json"}) + "\n")
    for bench in (gsm8k, math_):
        assert main(["evaluate", "--model", str(model), "--benchmark", str(bench), "--quiet"]) == 0
    assert sorted(p.name for p in (model / "eval").iterdir()) == ["gsm8k-test", "math-test"]
    assert _rows(model / "eval" / "math-test")[0]["id"] == "test/a/1.json"
    assert _rows(model / "eval" / "gsm8k-test")[0]["id"] == "0"


def test_clear_errors_and_no_folder_after_a_failed_load(eval_model_dir, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "2+2?"}\n')
    assert main(["evaluate", "--model", str(eval_model_dir), "--benchmark", str(bad), "--quiet"]) == 2
    assert "gold answer" in capsys.readouterr().err
    hashes = tmp_path / "hashes.jsonl"
    hashes.write_text('{"question": "2+2?", "answer": "4"}\n{"question": "3+3?", "answer": "3 + 3 = 6\\n####"}\n')
    assert main(["evaluate", "--model", str(eval_model_dir), "--benchmark", str(hashes), "--quiet"]) == 2
    assert "hashes.jsonl:2" in capsys.readouterr().err
    empty = tmp_path / "noweights"
    empty.mkdir()
    (empty / "config.json").write_text((eval_model_dir / "config.json").read_text())
    good = tmp_path / "good.jsonl"
    good.write_text('{"question": "2+2?", "answer": "#### 4"}\n')
    assert main(["evaluate", "--model", str(empty), "--benchmark", str(good), "--quiet"]) == 2
    assert "no weights" in capsys.readouterr().err
    assert sorted(p.name for p in empty.iterdir()) == ["config.json"]  # no eval/ folder left behind


def test_committed_sample_matches_shared_data():
    shared = Path(__file__).resolve().parents[3] / "shared" / "data" / "gsm8k" / "train.jsonl"
    shared_data_or_skip(shared)
    with open(shared, encoding="utf-8") as f:
        assert "".join(next(f) for _ in range(400)) == GSM8K_FIXTURE.read_text(encoding="utf-8")


def test_generation_never_runs_past_the_models_positions(eval_model_dir, gsm8k20, tmp_path, monkeypatch, caplog):
    """max_new_tokens=200 on a model with 300 positions: each batch generates at most 300 - its prompt width
    tokens, and the cap is said once."""
    import logging

    from transformers import GenerationMixin

    small = tmp_path / "small_context"
    shutil.copytree(eval_model_dir, small)
    config = json.loads((small / "config.json").read_text())
    (small / "config.json").write_text(json.dumps({**config, "max_position_embeddings": 300}))
    calls = []
    real = GenerationMixin.generate

    def spy(self, *args, **kwargs):  # records what reaches transformers, then generates for real
        out = real(self, *args, **kwargs)
        calls.append((kwargs["input_ids"].shape[1], kwargs["max_new_tokens"], out.shape[1]))
        return out

    monkeypatch.setattr(GenerationMixin, "generate", spy)
    with caplog.at_level(logging.WARNING):
        assert main(["evaluate", "--model", str(small), "--benchmark", str(gsm8k20), "--out", str(tmp_path / "e"),
                     "--quiet", "evaluate.max_new_tokens=200", "evaluate.batch_size=4", "--limit", "8"]) == 0
    assert len(calls) == 2
    for width, max_new, total in calls:
        assert max_new == 300 - width and total <= 300
    assert caplog.text.count("evaluate.max_new_tokens=200 plus prompts of up to") == 1
    assert "exceed the 300 positions" in caplog.text
