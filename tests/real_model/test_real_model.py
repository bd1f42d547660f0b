"""reasonsift on a real pretrained LM (SmolLM2-135M-Instruct, de-quantised from 4-bit; see scripts/real_model.py).

The tiny test models have a 512-token vocabulary, 2 layers and a home-made template. These tests run the
same code on a real 30-layer Llama with a 49k BPE vocabulary, tied embeddings and the ChatML template,
each against a plain transformers oracle, on a handful of examples so they stay fast on a CPU.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from reasonsift.config import load_config
from reasonsift.critical.run_critical import run_critical
from reasonsift.data.records import Example
from reasonsift.data.render import prompt_text, tokenize_example
from reasonsift.evaluation.answers import extract_answer, is_equivalent
from reasonsift.evaluation.generate import stop_token_ids
from reasonsift.evaluation.run_evaluation import run_evaluation
from reasonsift.scoring.perturb import Perturber, directional_lambdas, isotropic_steps
from reasonsift.data.render import Tokenized
from reasonsift.scoring.scorer import score_items
from tests.evaluation.conftest import gsm8k20_rows

ARITHMETIC = [  # short, verifiable rows: every generate() call on a 30-layer model costs seconds on a busy CPU
    {"id": "a1", "prompt": "What is 12 + 7?", "response": "12 + 7 = 19", "answer": "19"},
    {"id": "a2", "prompt": "What is 20 - 8?", "response": "20 - 8 = 13", "answer": "12"},
]


def _gsm8k_examples(n: int) -> list[Example]:
    return [Example(id=str(i), prompt=r["question"], response=r["answer"]) for i, r in enumerate(gsm8k20_rows()[:n])]


def test_model_folder_says_what_it_is(real_model_dir: Path):
    meta = json.loads((real_model_dir / "real_model.json").read_text())
    assert meta["license"] == "Apache-2.0" and "not the original bf16" in meta["what"]
    assert "de-quantised" in (real_model_dir / "README.md").read_text()
    assert 130e6 < meta["num_parameters"] < 140e6


def test_chatml_prompt_is_a_token_prefix_and_scorer_equals_labels_forward(real_model):
    model, tok = real_model
    assert model.config.num_hidden_layers == 30 and model.config.vocab_size == 49152
    items = []
    short = Example(id="a1", prompt=ARITHMETIC[0]["prompt"], response=ARITHMETIC[0]["response"])
    for ex in [*_gsm8k_examples(1), short]:
        t = tokenize_example(tok, ex, max_response_tokens=48)
        # The prompt the scorer conditions on is exactly what generation would see: ChatML with the
        # model's default system turn, ending in the assistant header, and a token prefix of the full text.
        text = prompt_text(tok, ex.prompt)
        assert text.startswith("<|im_start|>system\n") and text.endswith("<|im_start|>assistant\n")
        assert t.boundary_ok
        assert t.prompt_ids == tok.apply_chat_template([{"role": "user", "content": ex.prompt}],
                                                        add_generation_prompt=True, tokenize=True,
                                                        return_dict=True)["input_ids"]
        full = tok(text + ex.response + tok.eos_token, add_special_tokens=False)["input_ids"]
        assert full[: len(t.prompt_ids)] == t.prompt_ids and full[len(t.prompt_ids):][:48] == t.response_ids
        items.append(Tokenized(t.prompt_ids, t.response_ids))
    assert len({len(it.response_ids) for it in items}) > 1  # different lengths in one batch
    for packed in (False, True):
        nll = score_items(model, items, batch_tokens=4096, packed=packed)
        for it, x in zip(items, nll):
            ids = torch.tensor([it.prompt_ids + it.response_ids])
            labels = ids.clone()
            labels[:, : len(it.prompt_ids)] = -100
            with torch.no_grad():
                ref = float(model(input_ids=ids, labels=labels).loss)
            assert len(x) == len(it.response_ids)
            assert abs(float(x.mean()) - ref) < 1e-4, (packed, float(x.mean()), ref)
    # A real pretrained model: GSM8K solutions are far more likely than under a uniform guess (ln 49152 = 10.8).
    assert max(float(x.mean()) for x in nll) < 4.0


def test_perturbation_and_restore_on_30_layers(real_model, real_model_dir: Path):
    model, tok = real_model
    row = ARITHMETIC[0]
    t = tokenize_example(tok, Example(id="a1", prompt=row["prompt"], response=row["response"]))
    item = Tokenized(t.prompt_ids, t.response_ids)

    def loss() -> float:
        return float(score_items(model, [item])[0].mean())

    base_loss = loss()
    perturber = Perturber(model, seed=42, iso_steps=isotropic_steps(2e-3, 8e-3, 8),
                          dir_lambdas=directional_lambdas(1.0, 10.0, 8))
    # θ_f: θ₀ moved along a seeded direction (any fine-tune of the same architecture will do here).
    gen = torch.Generator().manual_seed(0)
    perturber.set_target({n: p.detach() + 1e-3 * torch.randn(p.shape, generator=gen)
                          for n, p in model.named_parameters()})
    stats = perturber.apply("isotropic", 2)  # nested: two noise draws per tensor
    embed = model.get_input_embeddings().weight
    n_params = sum(p.numel() for p in model.parameters())
    assert stats["perturbed"] == n_params - embed.numel()  # every non-embedding tensor; the tied head stays
    assert stats["changed"] > 0.99 * stats["perturbed"]
    iso_loss = loss()
    assert iso_loss != base_loss
    perturber.apply("directional", 1)
    assert loss() > base_loss  # radius 1 along a random direction hurts a trained model
    perturber.apply("isotropic", 2)  # any checkpoint is rebuilt from the kept base: same weights, same loss
    assert loss() == iso_loss
    perturber.restore()
    # Bit-identical to the weights on disk, tensor by tensor (the tied LM head is the embedding).
    with safe_open(str(real_model_dir / "model.safetensors"), "pt") as f:
        on_disk = set(f.keys())
        for name, p in model.named_parameters():
            assert name in on_disk, name
            assert torch.equal(p.detach(), f.get_tensor(name)), name
    assert model.get_output_embeddings().weight.data_ptr() == embed.data_ptr()
    assert loss() == base_loss


def _correct(tok, ids: list[int], gold: str) -> bool:
    """Oracle checker: decode, extract the final answer, compare (what critical must do)."""
    return is_equivalent(extract_answer(tok.decode(ids, skip_special_tokens=True), "math"), gold, "math")


def test_critical_masks_match_one_at_a_time_rollouts(real_model, real_model_dir: Path, tmp_path: Path):
    model, tok = real_model
    data = tmp_path / "pool.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ARITHMETIC))
    configs = load_config(["data", "model", "critical"], None,
                          [f"model.model={real_model_dir}", "critical.responses=dataset", "critical.alternatives=1",
                           "critical.rollout_extra_tokens=4", "critical.answer_kind=math"])
    report = run_critical(str(data), configs, tmp_path / "run", "test", progress=False)
    assert report["counts"]["kept"] == 1 and report["counts"]["wrong"] == 1  # a2's reference answer is wrong
    rows = {r["id"]: r for r in map(json.loads, (tmp_path / "run" / "critical.jsonl").read_text().splitlines())}
    row = rows["a1"]
    t = tokenize_example(tok, Example(id="a1", prompt=row["prompt"], response=row["response"]))
    assert t.response_ids[-1] == tok.eos_token_id and len(row["critical_mask"]) == len(t.response_ids)
    eos = stop_token_ids(model, tok)
    banned = set(tok.all_special_ids) | set(eos)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([t.prompt_ids + t.response_ids])).logits[0]  # (T, V)
    expected = []
    for k in range(len(t.response_ids) - 1):  # the final EOS is not tested (always 1)
        ranked = logits[len(t.prompt_ids) - 1 + k].argsort(descending=True).tolist()
        sub = next(c for c in ranked if c not in banned | {t.response_ids[k]})
        head = t.response_ids[:k] + [sub]
        prefix = torch.tensor([t.prompt_ids + head])
        out = model.generate(input_ids=prefix, attention_mask=torch.ones_like(prefix), do_sample=False,
                             max_new_tokens=len(t.response_ids) - k + 4, pad_token_id=tok.pad_token_id,
                             eos_token_id=eos, temperature=None, top_p=None, top_k=None)[0, prefix.shape[1]:].tolist()
        tail = out[:next((i for i, x in enumerate(out) if x in eos), len(out))]
        expected.append(int(not _correct(tok, head + tail, row["answer"])))
    assert row["critical_mask"] == expected + [1]
    assert sum(expected) >= 1  # at least one token decides the answer


QUIZ = [{"question": "What is 12 + 7?", "answer": "12 + 7 = 19\n#### 19"},
        {"question": "What is 6 times 7?", "answer": "6 * 7 = 42\n#### 42"}]


def test_evaluate_generates_what_transformers_generates(real_model, real_model_dir: Path, tmp_path: Path):
    model, tok = real_model
    bench = tmp_path / "quiz.jsonl"
    bench.write_text("".join(json.dumps(r) + "\n" for r in QUIZ))
    new = 16
    configs = load_config(["model", "evaluate"], None,
                          [f"model.model={real_model_dir}", f"evaluate.max_new_tokens={new}", "evaluate.batch_size=1"])
    metrics = run_evaluation(str(real_model_dir), str(bench), configs, tmp_path / "eval", "test", progress=False)
    assert metrics["n_items"] == 2
    rows = [json.loads(line) for line in (tmp_path / "eval" / "results.jsonl").read_text().splitlines()]
    stops = stop_token_ids(model, tok)
    assert tok.convert_tokens_to_ids("<|im_end|>") in stops  # ChatML's end of turn ends a generation
    for row, src in zip(rows, QUIZ):
        ids = tok(prompt_text(tok, src["question"]), add_special_tokens=False, return_tensors="pt")["input_ids"]
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=new,
                             pad_token_id=tok.pad_token_id, eos_token_id=stops,
                             temperature=None, top_p=None, top_k=None)[0, ids.shape[1]:]
        assert row["generations"][0] == tok.decode(out, skip_special_tokens=True)
        assert row["truncated"][0] == (len(out) == new and int(out[-1]) not in stops)
        gold = src["answer"].split("####")[-1].strip()
        assert row["correct"][0] == is_equivalent(extract_answer(row["generations"][0], "math"), gold, "math")
    assert np.isclose(metrics["accuracy"], np.mean([r["correct"][0] for r in rows]))
