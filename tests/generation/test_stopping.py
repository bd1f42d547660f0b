"""Rollouts end at their first completed final answer (``critical.stop_at_answer``) on the HF engine:
the same judgement as the full rollout cut there, for fewer decoded tokens."""

from __future__ import annotations

import json

from reasonsift.config import load_config
from reasonsift.critical.counterfactual import answer_end_tokens, greedy_rollouts, substitutes
from reasonsift.critical.run_critical import AnswerChecker, run_critical
from reasonsift.data.records import Example
from reasonsift.data.render import tokenize_example
from reasonsift.evaluation.answers import answer_end
from reasonsift.models import load_model, load_tokenizer
from reasonsift.synth.generate import write_jsonl
from tests.generation.conftest import CLOSING, memorised_rows, unseen_rows


def test_answer_end_finds_the_first_answer_completed_after_start():
    assert answer_end("so \\boxed{72}. done") == len("so \\boxed{72}")
    assert answer_end("\\boxed{\\frac{1}{2}} x") == len("\\boxed{\\frac{1}{2}}")  # nested braces
    assert answer_end("\\boxed{7") is None and answer_end("\\boxed{} \\boxed{") is None  # open or empty
    assert answer_end("x\n#### 72\nbye") == len("x\n#### 72\n") and answer_end("#### 72") is None  # line not ended
    assert answer_end("step\nanswer: 12\nmore") == len("step\nanswer: 12\n")
    assert answer_end("Final Answer: 3\n") == len("Final Answer: 3\n")
    assert answer_end("To answer: first\n") is None  # not at a line start: working, not a result
    text = "\\boxed{72} then \\boxed{3}"
    assert answer_end(text, start=len("\\boxed{72}")) == len(text)  # completed before start: not counted
    assert answer_end(text, start=len("\\boxed{7")) == len("\\boxed{72}")  # a box closed after start counts


def test_hf_rollouts_stop_at_the_answer_and_judge_like_the_cut_full_rollout(memorised_model_dir):
    model, tok = load_model(str(memorised_model_dir)), load_tokenizer(str(memorised_model_dir))
    check, eos = AnswerChecker(tok), [tok.eos_token_id]
    prefixes, caps, heads, golds = [], [], [], []
    for r in memorised_rows()[:3] + unseen_rows(2):
        sol = tokenize_example(tok, Example(id=r["id"], prompt=r["prompt"], response=r["response"], answer=r["answer"]))
        subs = substitutes(model, sol.prompt_ids, sol.response_ids, 1, set(tok.all_special_ids))
        for t in range(0, len(sol.response_ids) - 1, 3):
            heads.append(sol.response_ids[:t] + [subs[t][0]])
            prefixes.append(sol.prompt_ids + heads[-1])
            caps.append(len(sol.response_ids) - t + 8)
            golds.append(r["answer"])
    assert answer_end_tokens(tok) == {tok.convert_tokens_to_ids("\n")}  # the char vocabulary has no "}"
    full = greedy_rollouts(model, prefixes, caps, tok.pad_token_id, eos, batch_size=8)
    short = greedy_rollouts(model, prefixes, caps, tok.pad_token_id, eos, 8, None,
                            lambda i, tail: check.complete(heads[i], tail), answer_end_tokens(tok))
    stopped = 0
    for head, f, s, gold in zip(heads, full, short, golds):
        # Oracle: the full rollout cut after the first token that completes an answer past the head.
        j = next((j for j in range(1, len(f) + 1) if check.complete(head, f[:j])), len(f))
        assert s == f[:j]
        stopped += len(s) < len(f)
        assert check(head + s, gold, "text") == check(head + f[:j], gold, "text")
    # Rollouts from before the answer line recite it and stop there, skipping the closing remark.
    assert stopped > 0 and sum(map(len, short)) < sum(map(len, full))
    assert CLOSING.strip() not in "".join(tok.decode(s) for s in short if check.complete([], s))


def test_run_critical_stop_at_answer_same_masks_fewer_tokens(memorised_model_dir, tmp_path):
    data = write_jsonl(memorised_rows()[:4] + unseen_rows(2), tmp_path / "pool.jsonl")
    out = {}
    for stop in ("true", "false"):
        configs = load_config(["data", "model", "critical"], None, [
            f"model.model={memorised_model_dir}", "critical.answer_kind=text", "critical.max_new_tokens=60",
            "critical.rollout_extra_tokens=8", f"critical.stop_at_answer={stop}"])
        report = run_critical(str(data), configs, tmp_path / stop, "test", progress=False)
        out[stop] = report, [json.loads(x) for x in (tmp_path / stop / "critical.jsonl").read_text().splitlines()]
    (stopped, rows), (full, full_rows) = out["true"], out["false"]
    assert rows == full_rows and stopped["counts"]["kept"] >= 3
    assert 0 < stopped["critical_tokens"] < stopped["positions_tested"]
    assert stopped["rollouts"] == full["rollouts"] and stopped["decoded_tokens"] < full["decoded_tokens"]


def test_engine_vllm_without_vllm_names_the_install_command(tmp_path, capsys):
    import importlib.util

    import pytest

    from reasonsift.cli import main
    from reasonsift.synth.world import build_base_model

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed here")
    bench = tmp_path / "b.jsonl"
    bench.write_text('{"question": "1+1", "answer": "2"}\n')
    out = tmp_path / "eval"
    assert main(["evaluate", "--model", str(build_base_model(progress=False)), "--benchmark", str(bench),
                 "--engine", "vllm", "--out", str(out), "--quiet"]) == 2
    assert "pip install 'reasonsift[vllm]'" in capsys.readouterr().err and not out.exists()
