"""Critical tokens by counterfactual substitution, checked against one-at-a-time oracles.

Oracles here never call the code under test: substitutes come from the model's full logits,
rollouts from a step-by-step argmax loop, and the criterion from those rollouts checked one by one.
The synthetic world's θ₀ (shipped in the package) gives real right and wrong answers on a CPU.
"""

from __future__ import annotations

import json

import pytest
import torch

from reasonsift.config import ConfigError, load_config
from reasonsift.critical.counterfactual import find_critical, greedy_rollouts, substitutes
from reasonsift.critical.run_critical import AnswerChecker, run_critical
from reasonsift.data.records import Example
from reasonsift.data.render import tokenize_example
from reasonsift.models import load_model, load_tokenizer
from reasonsift.synth.generate import generate_pool, write_jsonl
from reasonsift.synth.world import build_base_model


@pytest.fixture(scope="module")
def theta0():
    path = build_base_model(progress=False)  # the shipped checkpoint: no pretraining here
    return path, load_model(str(path)), load_tokenizer(str(path))


def _argmax_rollout(model, prefix: list[int], cap: int, eos: set[int]) -> list[int]:
    """Oracle: greedy decoding by full recomputation, one token at a time."""
    ids, new = list(prefix), []
    with torch.no_grad():
        for _ in range(cap):
            nxt = int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax())
            if nxt in eos:
                break
            ids.append(nxt)
            new.append(nxt)
    return new


def _generate_one(model, prefix: list[int], cap: int, eos: list[int]) -> list[int]:
    """Oracle for the criterion: HF greedy generation of one unpadded sequence (the batched,
    left-padded path is checked against step-by-step argmax in its own test)."""
    out = model.generate(input_ids=torch.tensor([prefix]), attention_mask=torch.ones(1, len(prefix), dtype=torch.long),
                         max_new_tokens=cap, do_sample=False, temperature=None, top_p=None, top_k=None,
                         pad_token_id=0, eos_token_id=eos)[0, len(prefix):].tolist()
    return out[:next((i for i, t in enumerate(out) if t in eos), len(out))]


def _one_step_rows(n: int) -> list[dict]:
    """Clean one-step problems of the synthetic world (θ₀ saw such problems whole in pretraining)."""
    rows = [r for r in generate_pool(400, seed=7, low_quality_fraction=0.0) if r["true_difficulty"] == 1]
    return rows[:n]


def test_substitutes_are_the_most_probable_other_tokens(tiny_model_dir):
    model, tok = load_model(str(tiny_model_dir)), load_tokenizer(str(tiny_model_dir))
    prompt = tok("User: what is 3 + 4?\nAssistant: ", add_special_tokens=False)["input_ids"]
    response = tok("3 + 4 = 7. The answer is 7.", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    banned = set(tok.all_special_ids)
    got = substitutes(model, prompt, response, 3, banned)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt + response])).logits[0]  # (T, V)
    assert len(got) == len(response)
    for t, subs in enumerate(got):
        row = logits[len(prompt) - 1 + t]
        ranked = [int(i) for i in row.argsort(descending=True) if int(i) not in banned | {response[t]}]
        assert subs == ranked[:3]


def test_batched_rollouts_equal_one_at_a_time_greedy(tiny_model_dir):
    model, tok = load_model(str(tiny_model_dir)), load_tokenizer(str(tiny_model_dir))
    texts = ["User: Natalia sold clips", "User: A", "User: Weng earns $12 an hour for babysitting. Yesterday",
             "User: Betty is saving money for a new wallet", "User: 5", "User: James writes a 3-page letter"]
    prefixes = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    caps = [5, 12, 1, 9, 7, 3]
    eos = [tok.eos_token_id]
    got = greedy_rollouts(model, prefixes, caps, tok.pad_token_id, eos, batch_size=4)
    assert got == [_argmax_rollout(model, p, c, set(eos)) for p, c in zip(prefixes, caps)]
    assert all(len(g) <= c for g, c in zip(got, caps))


def test_critical_mask_matches_single_rollouts_and_answer_digits_are_critical(theta0):
    path, model, tok = theta0
    check = AnswerChecker(tok)
    eos = [tok.eos_token_id]
    banned = set(tok.all_special_ids)
    sols = []
    for row in _one_step_rows(12):
        ex = Example(id=row["id"], prompt=row["prompt"], response=row["response"], answer=row["answer"])
        tk = tokenize_example(tok, ex)
        sols.append((tk, row["answer"]))
    sols, golds = [tk for tk, _ in sols[:3]], [gold for _, gold in sols[:3]]
    masks, stats = find_critical(model, sols, 2, 8, banned, tok.pad_token_id, eos, 4,  # 4 x 16: several blocks
                                 lambda ids, s: check(ids, golds[s], "text"))
    for sol, gold, mask in zip(sols, golds, masks):
        subs = substitutes(model, sol.prompt_ids, sol.response_ids, 2, banned)
        assert len(mask) == len(sol.response_ids) and mask[-1] == 1  # the final EOS is always trained
        for t in range(len(sol.response_ids) - 1):
            outcomes = []
            for a in subs[t]:
                head = sol.response_ids[:t] + [a]
                tail = _generate_one(model, sol.prompt_ids + head, len(sol.response_ids) - t + 8, eos)
                outcomes.append(check(head + tail, gold, "text"))
            assert mask[t] == int(not any(outcomes)), (t, outcomes)
        # Ground truth: every character of the value on the answer line decides the answer.
        text = tok.decode(sol.response_ids, skip_special_tokens=True)
        start = text.index("answer:") + len("answer:")
        value_chars = [i for i in range(start, len(text)) if not text[i].isspace()]
        assert value_chars and all(mask[i] == 1 for i in value_chars)  # char tokenizer: token i = char i
    assert stats.positions == sum(len(s.response_ids) - 1 for s in sols)
    # Rounds: a second substitute is rolled out only where the first one failed.
    assert stats.positions <= stats.rollouts <= 2 * stats.positions
    assert stats.critical == sum(sum(m[:-1]) for m in masks)


def _configs(*overrides: str):
    return load_config(["data", "model", "critical"], None, list(overrides))


def test_run_critical_greedy_writes_masks_train_reads_and_resume(theta0, tmp_path, monkeypatch):
    path, _model, tok = theta0
    data = write_jsonl(_one_step_rows(10), tmp_path / "pool.jsonl")
    run = tmp_path / "run"
    configs = _configs(f"model.model={path}", "critical.answer_kind=text", "critical.rollout_extra_tokens=8",
                       "critical.max_new_tokens=40", "critical.shard_size=4")
    report = run_critical(str(data), configs, run, "test", progress=False)
    c = report["counts"]
    assert c["rows"] == 10 and c["kept"] + c["wrong"] + c["too_long"] + c["no_gold"] + c["rejected"] == 10
    assert c["kept"] >= 1, "θ₀ should solve some one-step problems greedily"
    rows = [json.loads(line) for line in (run / "critical.jsonl").read_text().splitlines()]
    assert len(rows) == c["kept"]
    gold = {r["id"]: r["answer"] for r in _one_step_rows(10)}
    for row in rows:
        # greedy mode: the model's own solution, verified against the gold answer
        assert row["answer"] == gold[row["id"]] and f"answer: {row['answer']}" in row["response"]
        assert len(row["critical_mask"]) == row["response_tokens"]
        assert row["critical_tokens"] == sum(row["critical_mask"])
    assert report["critical_tokens"] == sum(r["critical_tokens"] - 1 for r in rows)  # minus each final EOS
    # train --objective cft reads the file and takes loss exactly on the masked tokens
    from reasonsift.config import DataConfig, TrainConfig
    from reasonsift.training.dataset import build_train_dataset

    ds, stats = build_train_dataset(str(run / "critical.jsonl"), tok, DataConfig(), TrainConfig(objective="cft"))
    assert stats["tokens"]["loss"] == sum(r["critical_tokens"] for r in rows)
    # a rerun resumes: every shard is done, nothing is recomputed
    import reasonsift.critical.run_critical as rc

    monkeypatch.setattr(rc, "process_shard", lambda *a, **k: pytest.fail("a finished shard was recomputed"))
    assert run_critical(str(data), configs, run, "test", progress=False)["counts"] == c
    # ... but never under a changed config
    changed = _configs(f"model.model={path}", "critical.answer_kind=text", "critical.alternatives=1")
    with pytest.raises(ConfigError, match="different config"):
        run_critical(str(data), changed, run, "test", progress=False)


def test_run_critical_dataset_mode_keeps_rows_verbatim_and_drops_wrong_references(theta0, tmp_path):
    path, _model, _tok = theta0
    pool = generate_pool(200, seed=3, low_quality_fraction=0.5)
    wrong = [r for r in pool if r["low_quality_kind"] == "wrong_step" and r["true_difficulty"] <= 2][:2]
    rows = wrong + [r for r in pool if not r["low_quality"] and r["true_difficulty"] == 1][:4]
    assert len(wrong) == 2
    data = write_jsonl(rows, tmp_path / "pool.jsonl")
    configs = _configs(f"model.model={path}", "critical.responses=dataset", "critical.answer_kind=text",
                       "critical.rollout_extra_tokens=4")
    report = run_critical(str(data), configs, tmp_path / "run", "test", progress=False)
    out = [json.loads(line) for line in (tmp_path / "run" / "critical.jsonl").read_text().splitlines()]
    kept_ids = {r["id"] for r in out}
    assert not kept_ids & {r["id"] for r in wrong}  # a reference with a wrong final answer is not a solution
    by_id = {r["id"]: r for r in rows}
    for r in out:
        assert {k: v for k, v in r.items() if k not in ("critical_mask", "critical_tokens", "response_tokens")} \
            == by_id[r["id"]]
    assert report["counts"]["wrong"] >= len(wrong)


def test_cli_critical(theta0, tmp_path, capsys):
    from reasonsift.cli import main

    data = write_jsonl(_one_step_rows(2), tmp_path / "pool.jsonl")
    assert main(["critical", str(data), "--run", str(tmp_path / "run")]) == 2
    assert "no model given" in capsys.readouterr().err
    args = ["critical", str(data), "--model", str(theta0[0]), "--run", str(tmp_path / "run"), "--responses",
            "dataset", "--quiet", "answer_kind=text", "critical.rollout_extra_tokens=2"]
    assert main(args) == 0
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "run" / "critical" / "report.json").read_text())
    assert f"kept {report['counts']['kept']} of 2 rows" in out and report["counts"]["kept"] == 2
    assert "answer_kind: text" in (tmp_path / "run" / "critical" / "config.yaml").read_text()
    card = (tmp_path / "run" / "critical" / "README.md").read_text()
    assert f"{report['counts']['kept']} examples" in card and "--responses dataset" in card


def test_bpe_chat_template_masks_fit_training(tiny_model_dir, tmp_path):
    """A BPE tokenizer with a chat template (GSM8K rows, #### answers): masks line up with training."""
    from reasonsift.config import DataConfig, TrainConfig
    from reasonsift.training.dataset import build_train_dataset
    from tests.conftest import gsm8k_lines

    data = tmp_path / "gsm8k.jsonl"
    data.write_text("".join(gsm8k_lines(2)), encoding="utf-8")
    configs = _configs(f"model.model={tiny_model_dir}", "critical.responses=dataset", "critical.alternatives=1",
                       "critical.rollout_extra_tokens=0")
    report = run_critical(str(data), configs, tmp_path / "run", "test", progress=False)
    assert report["counts"]["kept"] == 2  # a GSM8K reference answers its own "#### N"
    rows = [json.loads(line) for line in (tmp_path / "run" / "critical.jsonl").read_text().splitlines()]
    added = {"critical_mask", "critical_tokens", "response_tokens"}
    assert [set(r) - added for r in rows] == [{"question", "answer"}] * 2  # the GSM8K row, verbatim
    tok = load_tokenizer(str(tiny_model_dir))
    ds, stats = build_train_dataset(str(tmp_path / "run" / "critical.jsonl"), tok, DataConfig(),
                                    TrainConfig(objective="cft"))
    assert stats["tokens"]["loss"] == sum(r["critical_tokens"] for r in rows)
    for r, labels in zip(rows, ds["labels"]):
        trained = [i for i, label in enumerate(labels) if label != -100]
        start = len(labels) - r["response_tokens"]
        assert trained == [start + i for i, m in enumerate(r["critical_mask"]) if m]


def test_skipped_rows_are_kept_with_their_reasons(theta0, tmp_path):
    """--skip-bad-rows: RUN/critical/rejected.jsonl holds each skipped row verbatim with its reason."""
    from reasonsift.models import max_positions

    path, _model, _tok = theta0
    rows = _one_step_rows(3)
    data = tmp_path / "pool.jsonl"
    long_row = dict(rows[0], prompt="What is 1 + 1? " * max_positions(str(path)))
    data.write_text(json.dumps(rows[0]) + "\n" + '{"prompt": "x"\n' + json.dumps(long_row) + "\n"
                    + "".join(json.dumps(r) + "\n" for r in rows[1:]), encoding="utf-8")
    configs = _configs(f"model.model={path}", "critical.responses=dataset", "critical.answer_kind=text",
                       "critical.rollout_extra_tokens=2", "data.skip_bad_rows=true", "critical.shard_size=2")
    report = run_critical(str(data), configs, tmp_path / "run", "test", progress=False)
    assert report["counts"]["rejected"] == 2 and report["counts"]["rows"] == 5
    rejected = [json.loads(line) for line in (tmp_path / "run" / "critical" / "rejected.jsonl").read_text().splitlines()]
    assert [r["where"] for r in rejected] == ["pool.jsonl:2", "pool.jsonl:3"]
    assert "malformed JSON" in rejected[0]["reason"] and rejected[0]["raw"] == '{"prompt": "x"'
    assert "positions" in rejected[1]["reason"] and json.loads(rejected[1]["raw"]) == long_row
