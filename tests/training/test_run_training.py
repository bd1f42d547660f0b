"""End to end through TRL: the logged loss is ours, the LM head runs on loss positions only, checkpoints
load plainly, LoRA merges, resume, errors."""

from __future__ import annotations

import json
import logging
import shutil
from types import SimpleNamespace

import pytest
import torch

from reasonsift.config import ConfigError, load_config
from reasonsift.data.records import DataError
from reasonsift.data.render import IGNORE_INDEX
from reasonsift.models import ModelLoadError, load_model
from reasonsift.training.dataset import build_train_dataset
from reasonsift.training.run_training import sft_config, run_training
from reasonsift.training.trainer import ObjectiveTrainer
from tests.conftest import gsm8k_lines
from tests.training.conftest import full_sequence_loss, make_configs


def load_plain(path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path)


def dataset_loss(model_dir, data, configs) -> float:
    """The objective over the whole dataset at the initial weights, one padded batch, from full logits."""
    from reasonsift.models import load_tokenizer

    tok = load_tokenizer(str(model_dir))
    ds, _ = build_train_dataset(str(data), tok, configs["data"], configs["train"])
    width = max(len(r) for r in ds["input_ids"])

    def pad(col: str, value: int) -> torch.Tensor:  # (N, width) right-padded
        return torch.tensor([r + [value] * (width - len(r)) for r in ds[col]])

    with torch.no_grad():
        logits = load_model(str(model_dir))(input_ids=pad("input_ids", tok.pad_token_id),
                                            attention_mask=pad("attention_mask", 0)).logits
    return full_sequence_loss(logits, pad("labels", IGNORE_INDEX), configs["train"].objective).item()


@pytest.mark.parametrize("objective", ["dft", "cft"])
def test_logged_loss_is_our_objective_over_the_accumulated_batch(tiny_model_dir, cft_data, tmp_path, objective):
    # 8 examples = 2 micro-batches of 4 = one optimizer step: whatever the data order, the first logged
    # loss is the objective over all 8 examples at the initial weights, iff each micro-batch is divided
    # by the loss tokens of the whole accumulated batch.
    configs = make_configs(tiny_model_dir, f"train.objective={objective}", "train.max_steps=1",
                           "train.per_device_train_batch_size=4", "train.gradient_accumulation_steps=2")
    report = run_training(str(cft_data), configs, tmp_path / "out", progress=False)
    assert report["steps"] == 1
    assert report["loss_curve"][0]["loss"] == pytest.approx(dataset_loss(tiny_model_dir, cft_data, configs), rel=1e-4)


def test_lm_head_runs_on_loss_positions_only(tiny_model_dir, cft_data, tmp_path):
    # One example per micro-batch: the LM head must see exactly the positions whose next label is a
    # (critical) loss token, not the prompt or the non-critical response tokens.
    from reasonsift.models import load_tokenizer

    configs = make_configs(tiny_model_dir, "train.objective=cft", "train.max_steps=1",
                           "train.per_device_train_batch_size=1", "train.gradient_accumulation_steps=8")
    cfg = configs["train"]
    tok = load_tokenizer(str(tiny_model_dir))
    ds, _ = build_train_dataset(str(cft_data), tok, configs["data"], cfg)
    model = load_model(str(tiny_model_dir))
    rows = []  # LM-head input rows per forward
    model.lm_head.register_forward_hook(lambda mod, args, out: rows.append(args[0].shape[:-1].numel()))
    trainer = ObjectiveTrainer(model=model, args=sft_config(cfg, tmp_path / "out", False, False), train_dataset=ds,
                               processing_class=tok)
    trainer.objective = cfg.objective
    trainer.train()
    loss_tokens = [sum(t != IGNORE_INDEX for t in labels[1:]) for labels in ds["labels"]]
    assert sorted(rows) == sorted(loss_tokens)  # one forward per micro-batch, no metrics forward
    assert sum(rows) < 0.5 * sum(len(ids) for ids in ds["input_ids"])
    assert not trainer.full_logits


class NoLogitsToKeep(torch.nn.Module):
    """A causal LM whose forward has no logits_to_keep (and no **kwargs); counts its calls."""

    def __init__(self, model):
        super().__init__()
        self.model, self.calls = model, 0

    def forward(self, input_ids, attention_mask=None, use_cache=None):
        self.calls += 1
        return self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=use_cache)


def test_model_without_logits_to_keep_falls_back_to_full_logits_once(tiny_model_dir, caplog):
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 500, (2, 12), generator=gen)
    labels = ids.clone()
    labels[0, :5] = labels[1, :8] = IGNORE_INDEX
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    model = load_model(str(tiny_model_dir))
    # compute_loss reads only these attributes of the trainer when training on one process
    fake = SimpleNamespace(objective="dft", full_logits=False,
                           args=SimpleNamespace(average_tokens_across_devices=False))
    expected = ObjectiveTrainer.compute_loss(fake, model, dict(inputs))
    assert not fake.full_logits
    wrapped = NoLogitsToKeep(model)
    with caplog.at_level(logging.WARNING, logger="reasonsift.training.trainer"):
        first = ObjectiveTrainer.compute_loss(fake, wrapped, dict(inputs))
        second = ObjectiveTrainer.compute_loss(fake, wrapped, dict(inputs))
    assert fake.full_logits and wrapped.calls == 2  # the rejected call never reached forward; no retry later
    assert sum("does not accept a tensor logits_to_keep" in r.message for r in caplog.records) == 1
    torch.testing.assert_close(first, expected)
    torch.testing.assert_close(second, expected)
    assert expected.item() == pytest.approx(full_sequence_loss(model(input_ids=ids).logits, labels, "dft").item(),
                                            rel=1e-5)


def test_full_run_writes_a_plain_hf_folder(tiny_model_dir, train_data, tmp_path):
    out = tmp_path / "out"
    configs = make_configs(tiny_model_dir, "train.max_steps=2", "train.save_steps=2")
    report = run_training(str(train_data), configs, out, command="reasonsift train test", progress=False)
    trained, base = load_plain(out), load_plain(tiny_model_dir)
    assert any(not torch.equal(a, b) for a, b in zip(trained.state_dict().values(), base.state_dict().values()))
    assert (out / "model.safetensors").exists() and (out / "tokenizer.json").exists()
    assert (out / "checkpoint-2" / "trainer_state.json").exists()
    saved = json.loads((out / "train_report.json").read_text())
    assert saved["steps"] == 2 == report["steps"] and [e["step"] for e in saved["loss_curve"]] == [1, 2]
    assert saved["dataset"]["examples"] == 8 and saved["dataset"]["loss_token_fraction"] == 1.0
    assert saved["final_loss"] == saved["loss_curve"][-1]["loss"] and saved["tokens_trained"]["loss"] > 0
    card = (out / "README.md").read_text()
    for text in (str(tiny_model_dir), str(train_data), "`sft`", "learning_rate", f"{saved['final_loss']:.4f}"):
        assert text in card, text
    # the resolved config is usable as --config
    again = load_config(["data", "model", "train"], out / "config.yaml")
    assert again["train"] == configs["train"] and again["model"] == configs["model"]


def test_lora_run_saves_merged_model_and_adapter(tiny_model_dir, train_data, tmp_path, caplog):
    out = tmp_path / "lora"
    configs = make_configs(tiny_model_dir, "train.lora=true", "train.max_steps=2", "train.lora_r=4",
                           "train.learning_rate=1e-2")
    with caplog.at_level(logging.WARNING, logger="reasonsift.training.trainer"):
        run_training(str(train_data), configs, out, progress=False)
    # logits_to_keep got through the PEFT wrapper (no full-logits fallback warning)
    assert not [r for r in caplog.records if r.name == "reasonsift.training.trainer"]
    assert (out / "adapter" / "adapter_config.json").exists()
    trained, base = load_plain(out), load_plain(tiny_model_dir)
    assert type(trained).__name__ == "LlamaForCausalLM"  # a plain model, no peft wrapper needed
    diff = {k: (trained.state_dict()[k] - v).abs().max().item() for k, v in base.state_dict().items()}
    assert diff["model.embed_tokens.weight"] == 0.0  # all-linear LoRA leaves embeddings alone
    assert diff["model.layers.0.self_attn.q_proj.weight"] > 0  # the merged delta is in the weights


def test_resume_from_checkpoint_reproduces_the_uninterrupted_run(tiny_model_dir, train_data, tmp_path):
    configs = make_configs(tiny_model_dir, "train.max_steps=4", "train.save_steps=2")
    full = tmp_path / "full"
    run_training(str(train_data), configs, full, progress=False)
    # a run "killed" after its step-2 checkpoint: only the checkpoint and the manifest are there
    cut = tmp_path / "cut"
    shutil.copytree(full / "checkpoint-2", cut / "checkpoint-2")
    shutil.copy(full / "train_manifest.json", cut / "train_manifest.json")
    report = run_training(str(train_data), configs, cut, progress=False)
    assert report["resumed_from"] == str(cut / "checkpoint-2") and report["steps"] == 4
    a, b = load_plain(full).state_dict(), load_plain(cut).state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
    # a changed hyperparameter must not silently continue those checkpoints
    with pytest.raises(ConfigError, match="changed: train.learning_rate"):
        run_training(str(train_data), make_configs(tiny_model_dir, "train.learning_rate=5e-4"), cut, progress=False)
    with pytest.raises(ConfigError, match="already holds checkpoints"):
        run_training(str(train_data), make_configs(tiny_model_dir, "train.resume=false"), cut, progress=False)


def test_bad_inputs_give_clear_errors(tiny_model_dir, train_data, tmp_path):
    with pytest.raises(DataError, match="no such file"):
        run_training(str(tmp_path / "missing.jsonl"), make_configs(tiny_model_dir), tmp_path / "o1")
    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    for f in tiny_model_dir.iterdir():
        if not f.name.endswith(".safetensors"):
            shutil.copy(f, no_weights / f.name)
    with pytest.raises(ModelLoadError, match="no weights"):
        run_training(str(train_data), make_configs(no_weights), tmp_path / "o2")
    with pytest.raises(DataError, match="needs a critical-token mask"):
        run_training(str(train_data), make_configs(tiny_model_dir, "train.objective=cft"), tmp_path / "o3")
    with pytest.raises(ConfigError, match="no model"):
        run_training(str(train_data), make_configs(""), tmp_path / "o4")
    with pytest.raises(ConfigError, match="objective"):
        make_configs(tiny_model_dir, "train.objective=kto")
    with pytest.raises(ConfigError, match="bf16"):
        run_training(str(train_data), make_configs(tiny_model_dir, "train.bf16=maybe"), tmp_path / "o5")


def test_cli_train_with_cft_yaml_and_overrides(tiny_model_dir, cft_data, tmp_path, capsys):
    from reasonsift.cli import main

    yaml_file = tmp_path / "train.yaml"
    yaml_file.write_text("train:\n  objective: cft\n  max_steps: 1\n  max_length: 160\n")
    out = tmp_path / "cli_out"
    # positionals may follow options, overrides mix with flags
    assert main(["train", str(cft_data), "--model", str(tiny_model_dir), "--out", str(out), "--config", str(yaml_file),
                 "--quiet", "train.learning_rate=1e-3", "--limit", "6"]) == 0
    assert "trained cft for 1 steps on 6 examples" in capsys.readouterr().out
    report = json.loads((out / "train_report.json").read_text())
    assert 0.1 < report["dataset"]["loss_token_fraction"] < 0.4
    saved = load_config(["data", "model", "train"], out / "config.yaml")
    assert saved["train"].objective == "cft" and saved["train"].learning_rate == 1e-3 and saved["data"].limit == 6


def test_model_card_names_a_reasonsift_subset(tmp_path):
    from reasonsift.training.run_training import model_card

    run = tmp_path / "runs" / "pool"
    run.mkdir(parents=True)
    (run / "selected.jsonl").write_text("{}\n")
    (run / "report.json").write_text(json.dumps({"input": "pool.jsonl", "selection": {"n_selected": 3,
                                                                                      "method": "temp"}}))
    stats = {"examples": 3, "tokens": {"input": 900, "loss": 120}, "loss_token_fraction": 0.12,
             "loss_token_fraction_of_full_responses": 0.1, "prefix_examples": 0}
    report = {"base_model": "Qwen/Qwen2.5-7B-Instruct", "data": str(run / "selected.jsonl"), "out": "ckpt/x",
              "dataset": stats, "steps": 5, "epochs": 1.0, "final_loss": 0.5}
    configs = make_configs("Qwen/Qwen2.5-7B-Instruct", "train.objective=cft")
    card = model_card(report, configs)
    assert f"reasonsift selection from run `{run}`: 3 examples chosen with `temp` from `pool.jsonl`" in card
    assert "12.0% of the response tokens" in card and "`cft`" in card
    report["data"] = str(tmp_path / "other.jsonl")
    assert "reasonsift selection" not in model_card(report, configs)


def test_bad_and_overlong_rows_are_rejected_like_in_scoring(tiny_model_dir, train_data, tmp_path, caplog):
    """Under --skip-bad-rows train keeps the skipped rows with their reasons in OUT/rejected.jsonl; a prompt
    past the model's 2,048 positions is rejected with scoring's reason; train.max_length is capped at 2,048."""
    good = train_data.read_text().splitlines(keepends=True)
    long_row = json.dumps({"question": "How many apples did Tom pick on Monday? " * 400, "answer": "#### 3"})
    data = tmp_path / "pool.jsonl"
    data.write_text("".join(good[:3]) + '{"question": "no answer"}\n' + long_row + "\n" + "".join(good[3:]),
                    encoding="utf-8")
    strict = tmp_path / "strict.jsonl"
    strict.write_text("".join(good[:3]) + long_row + "\n" + "".join(good[3:]), encoding="utf-8")
    with pytest.raises(DataError, match=r"strict.jsonl:4: prompt \(.* tokens\) \+ 1 response tokens exceed the "
                                        r"model's 2,048 positions"):
        run_training(str(strict), make_configs(tiny_model_dir, "train.max_steps=1"), tmp_path / "strict")
    assert not (tmp_path / "strict").exists()
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING):
        report = run_training(str(data), make_configs(tiny_model_dir, "train.max_steps=1", "data.skip_bad_rows=true",
                                                      "train.max_length=8192"), out, progress=False)
    assert "train.max_length=8192 is more than the 2048 positions" in caplog.text
    assert report["dataset"]["max_length"] == 2048 and report["dataset"]["rejected_rows"] == 2
    rejected = [json.loads(line) for line in (out / "rejected.jsonl").read_text().splitlines()]
    assert [r["where"] for r in rejected] == ["pool.jsonl:4", "pool.jsonl:5"]
    assert "missing field 'answer'" in rejected[0]["reason"] and "2,048 positions" in rejected[1]["reason"]
    assert json.loads(rejected[0]["raw"]) == {"question": "no answer"}
    assert report["dataset"]["examples"] == 8


def test_a_resumed_run_reports_the_loss_of_an_uninterrupted_one(tiny_model_dir, train_data, tmp_path):
    """logging_steps=3 with a checkpoint at step 2: the reported figures come from every step's loss in
    windows aligned to 3 steps, so the resumed run's report equals the uninterrupted one's, and the
    final loss is the mean of the last 3 steps (not the last logged window's straddling mean)."""
    configs = make_configs(tiny_model_dir, "train.max_steps=5", "train.save_steps=2", "train.logging_steps=3",
                           "train.save_total_limit=5")
    full = tmp_path / "full"
    a = run_training(str(train_data), configs, full, progress=False)
    cut = tmp_path / "cut"
    shutil.copytree(full / "checkpoint-2", cut / "checkpoint-2")
    shutil.copy(full / "train_manifest.json", cut / "train_manifest.json")
    b = run_training(str(train_data), configs, cut, progress=False)
    assert b["resumed_from"] and len(a["step_losses"]) == len(b["step_losses"]) == 5
    assert b["step_losses"] == pytest.approx(a["step_losses"], rel=1e-6)
    assert b["final_loss"] == pytest.approx(a["final_loss"], rel=1e-6)
    assert a["final_loss"] == pytest.approx(sum(a["step_losses"][-3:]) / 3) and a["final_loss_steps"] == 3
    assert [p["step"] for p in a["loss_curve"]] == [p["step"] for p in b["loss_curve"]] == [3, 5]
    for p, q in zip(a["loss_curve"], b["loss_curve"]):
        assert q["loss"] == pytest.approx(p["loss"], rel=1e-6)
    assert a["loss_curve"][0]["loss"] == pytest.approx(sum(a["step_losses"][:3]) / 3)


def test_few_steps_report_the_loss_reached_not_the_first_step(tiny_model_dir, train_data, tmp_path):
    """5 steps with logging_steps=10: the final step is logged and the final loss is over all 5 steps."""
    report = run_training(str(train_data), make_configs(tiny_model_dir, "train.max_steps=5", "train.logging_steps=10"),
                          tmp_path / "out", progress=False)
    assert len(report["step_losses"]) == 5 and report["final_step_loss"] == report["step_losses"][-1]
    assert report["final_loss"] == pytest.approx(sum(report["step_losses"]) / 5)
    assert report["final_loss"] != pytest.approx(report["step_losses"][0])
    assert [p["step"] for p in report["loss_curve"]] == [5]
    assert "mean of the last 5 steps" in (tmp_path / "out" / "README.md").read_text()


def test_group_by_length_cuts_padding_and_still_sees_every_example(tiny_model_dir, tmp_path):
    # 64 rows of two very different lengths, 2 per micro-batch: random order pads many short rows to a
    # long one; grouped batches (transformers' LengthGroupedSampler: mega-batches of 16 here, each
    # sorted by length) mostly pair rows of one length. Every row is still trained on once per epoch.
    from reasonsift.models import load_tokenizer

    rows = [json.loads(line) for line in gsm8k_lines(64)]
    for i, row in enumerate(rows):
        row["answer"] = row["answer"][:40] if i % 2 else row["answer"] * 3  # short / long responses
    data = tmp_path / "mixed.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    tok = load_tokenizer(str(tiny_model_dir))
    padding = {}
    for group in (False, True):
        configs = make_configs(tiny_model_dir, "train.num_train_epochs=1", "train.max_length=512",
                               f"train.group_by_length={group}")
        ds, _ = build_train_dataset(str(data), tok, configs["data"], configs["train"])
        lengths = sorted(len(ids) for ids in ds["input_ids"])
        assert lengths[-1] > 3 * lengths[0]  # the data really mixes lengths
        model = load_model(str(tiny_model_dir))
        seen = []  # (real tokens, rows x padded width) per forward
        model.register_forward_pre_hook(lambda mod, args, kwargs: seen.append(
            (int(kwargs["attention_mask"].sum()), kwargs["attention_mask"].numel())), with_kwargs=True)
        trainer = ObjectiveTrainer(model=model, args=sft_config(configs["train"], tmp_path / f"out{group}", False,
                                                                 False), train_dataset=ds, processing_class=tok)
        trainer.train()
        assert sum(real for real, _ in seen) == sum(lengths)  # every row exactly once
        padding[group] = sum(total - real for real, total in seen) / sum(total for _, total in seen)
    assert padding[True] < 0.5 * padding[False], padding
