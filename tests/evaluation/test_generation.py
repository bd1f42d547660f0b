"""Generation for evaluation: which tokens and strings stop it, the truncated flag, LoRA adapter folders."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from reasonsift.cli import main
from reasonsift.config import EvalConfig, ModelConfig
from reasonsift.data.render import prompt_text
from reasonsift.evaluation.generate import PLAIN_STOP, Generation, finish, generate, stop_strings, stop_token_ids
from reasonsift.models import ModelLoadError, load_model_and_tokenizer
from tests.evaluation.conftest import gsm8k20_rows

SAMPLED = EvalConfig(temperature=1.0, max_new_tokens=16)


def _load(model_dir: Path):
    return load_model_and_tokenizer(str(model_dir), ModelConfig(model=str(model_dir), device="cpu"))


def _sampled_ids(model, tokenizer, prompt: str) -> list[int]:
    """The 16 new token ids a seeded sample draws, straight from ``model.generate`` (no stopping)."""
    tokenizer.padding_side = "left"
    enc = tokenizer([prompt], return_tensors="pt", add_special_tokens=False)
    torch.manual_seed(7)
    out = model.generate(**enc, max_new_tokens=16, do_sample=True, temperature=1.0, top_p=1.0, top_k=None,
                         eos_token_id=None, pad_token_id=tokenizer.pad_token_id)
    return out[0, enc["input_ids"].shape[1]:].tolist()


def test_stop_token_ids_are_the_union_of_generation_config_and_tokenizer():
    tok = SimpleNamespace(eos_token_id=1)
    assert stop_token_ids(SimpleNamespace(generation_config=SimpleNamespace(eos_token_id=[7, 9])), tok) == [7, 9, 1]
    assert stop_token_ids(SimpleNamespace(generation_config=SimpleNamespace(eos_token_id=1)), tok) == [1]
    assert stop_token_ids(SimpleNamespace(generation_config=SimpleNamespace(eos_token_id=None)), tok) == [1]
    assert stop_token_ids(SimpleNamespace(), SimpleNamespace(eos_token_id=None)) == []


def test_generation_stops_at_a_generation_config_eos(eval_model_dir):
    # Qwen / Llama-3 chat models end a turn with an id listed only in generation_config.json.
    model, tok = _load(eval_model_dir)
    prompt = prompt_text(tok, gsm8k20_rows()[0]["question"])
    ids = _sampled_ids(model, tok, prompt)
    k = next(i for i in range(2, 16) if ids[i] not in ids[:i] and ids[i] != tok.eos_token_id)
    torch.manual_seed(7)
    [[free]] = generate(model, tok, [prompt], SAMPLED)
    assert free == Generation(tok.decode(ids, skip_special_tokens=True), truncated=True)
    model.generation_config.eos_token_id = [ids[k]]  # the tokenizer's eos stays 1
    torch.manual_seed(7)
    [[stopped]] = generate(model, tok, [prompt], SAMPLED)
    assert stopped == Generation(tok.decode(ids[:k + 1], skip_special_tokens=True), truncated=False)


def test_generation_stops_at_a_stop_string(eval_model_dir):
    model, tok = _load(eval_model_dir)
    prompt = prompt_text(tok, gsm8k20_rows()[1]["question"])
    text = tok.decode(_sampled_ids(model, tok, prompt), skip_special_tokens=True)
    stop = text[len(text) // 2:len(text) // 2 + 3]
    torch.manual_seed(7)
    [[gen]] = generate(model, tok, [prompt], SAMPLED, stops=[stop])
    assert gen == Generation(text[:text.find(stop)], truncated=False)


def test_plain_template_stops_at_the_next_user_turn(eval_model_dir):
    model, tok = _load(eval_model_dir)
    assert stop_strings(tok) == []  # a chat template marks turns with special tokens
    tok.chat_template = None  # a base model: render.PLAIN_TEMPLATE, "User: ...\nAssistant: "
    assert stop_strings(tok) == [PLAIN_STOP] == ["\nUser:"]
    [[gen]] = generate(model, tok, [prompt_text(tok, "2+2?")], EvalConfig(max_new_tokens=8))  # HF accepts it
    assert "\nUser:" not in gen.text
    # What the model writes after its answer, cut where it starts the user's next turn.
    assert finish([5, 6, 7], "4.\nUser: and 3+3?", {1}, [PLAIN_STOP], 3) == Generation("4.", False)
    assert finish([5, 6, 7], "4 and 5 and", {1}, [PLAIN_STOP], 3) == Generation("4 and 5 and", True)
    assert finish([5, 1, 0], "4", {1}, [PLAIN_STOP], 3) == Generation("4", False)  # ended by eos
    assert finish([5, 6], "4 and", {1}, [], 3) == Generation("4 and", False)  # stopped before the limit


def _lora_checkpoint(base_dir: Path, ckpt: Path) -> torch.nn.Module:
    """A Trainer-style ``checkpoint-N`` of a LoRA run: adapter and tokenizer only; returns the peft model."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(base_dir)
    torch.manual_seed(0)
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                 init_lora_weights=False)).eval()  # non-zero deltas
    peft_model.save_pretrained(ckpt)
    AutoTokenizer.from_pretrained(base_dir).save_pretrained(ckpt)
    return peft_model


def test_lora_checkpoint_folder_is_loaded_on_its_base(eval_model_dir, tmp_path):
    pytest.importorskip("peft")
    ckpt = tmp_path / "run" / "checkpoint-2"
    peft_model = _lora_checkpoint(eval_model_dir, ckpt)
    assert not (ckpt / "config.json").exists()
    assert json.loads((ckpt / "adapter_config.json").read_text())["base_model_name_or_path"] == str(eval_model_dir)
    model, tok = _load(ckpt)
    base, _ = _load(eval_model_dir)
    x = torch.tensor([tok("Natalia sold clips")["input_ids"]])
    with torch.no_grad():
        expected = peft_model(input_ids=x).logits
        assert torch.allclose(model(input_ids=x).logits, expected, atol=1e-4)
        assert not torch.allclose(base(input_ids=x).logits, expected, atol=1e-4)  # the adapter did something
    bench = tmp_path / "two.jsonl"
    bench.write_text("".join(json.dumps(r) + "\n" for r in gsm8k20_rows()[:2]))
    assert main(["evaluate", "--model", str(ckpt), "--benchmark", str(bench), "--quiet",
                 "evaluate.max_new_tokens=4"]) == 0
    [metrics] = (ckpt / "eval").glob("*-two/metrics.json")
    assert json.loads(metrics.read_text())["n_items"] == 2


def test_lora_checkpoint_without_peft_names_the_merged_folder(eval_model_dir, tmp_path, monkeypatch):
    pytest.importorskip("peft")
    run = tmp_path / "run"
    ckpt = run / "checkpoint-2"
    _lora_checkpoint(eval_model_dir, ckpt)
    monkeypatch.setitem(sys.modules, "peft", None)  # "import peft" now raises ImportError
    with pytest.raises(ModelLoadError, match="reasonsift train --lora"):
        _load(ckpt)
    for name in ("config.json", "model.safetensors"):  # the finished run's merged model in OUT
        shutil.copy(eval_model_dir / name, run / name)
    with pytest.raises(ModelLoadError, match=f"LoRA adapter .*merged model in {run}$"):
        _load(ckpt)
