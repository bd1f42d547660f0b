"""End to end: ``reasonsift score`` on a GSM8K sample with a tiny model; resume after kill -9; bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from reasonsift.cli import main

SMALL = ["score.num_isotropic=3", "score.num_directional=3", "score.short_tokens=16", "score.long_tokens=64",
         "score.shard_size=16", "score.isotropic_std_start=0.02", "score.isotropic_std_end=0.2"]
SRC = str(Path(__file__).resolve().parents[2] / "src")


def score_args(data: Path, model: Path, direction: Path, run: Path, *extra: str) -> list[str]:
    return ["score", str(data), "--model", str(model), "--direction-model", str(direction), "--run", str(run),
            "--quiet", *SMALL, *extra]


def test_outputs_exist_and_are_complete(gsm8k_sample, tiny_model_dir, tiny_direction_dir, tmp_path):
    run = tmp_path / "run"
    assert main(score_args(gsm8k_sample, tiny_model_dir, tiny_direction_dir, run)) == 0
    scores = pq.read_table(run / "scores.parquet").to_pandas()
    assert len(scores) == 48 and scores["id"].is_unique
    assert list(scores["row_index"]) == list(range(48))
    for col in ("id", "source", "n_response_tokens", "base_loss_100", "difficulty", "loss_100", "loss_1000",
                "brittleness"):
        assert col in scores and scores[col].notna().all(), col
    assert all(len(v) == 3 for v in scores["loss_1000"]) and all(len(v) == 3 for v in scores["loss_100"])
    assert (scores["brittleness"] == scores["loss_1000"].map(lambda v: v[-1] - v[0])).all()
    report = json.loads((run / "report.json").read_text())
    assert report["counts"] == {"examples": 48, "rejected": 0, "boundary_mismatch": 0, "rows": 48}
    tokens = report["tokens"]
    assert tokens["checkpoints"] == 7 and tokens["scored"] > 0 and tokens["full_trace_once"] > 0
    # The long window (64) cuts GSM8K answers, so TEMP scores fewer tokens than full traces at 7 checkpoints.
    assert tokens["scored"] < tokens["full_trace_all_checkpoints"]
    assert report["direction"]["source"].startswith("model:")
    assert report["theta_rnd"]["checkpoint"] in (1, 2, 3) and len(report["theta_rnd"]["ratios"]) == 3
    assert report["wall_time_s"] > 0
    assert (run / "config.yaml").read_text().startswith("# written by:")
    # Difficulty is the θ_rnd column of the Gaussian losses.
    k = report["theta_rnd"]["checkpoint"]
    assert (scores["difficulty"] == scores["isotropic_loss_100"].map(lambda v: v[k - 1])).all()


def test_killed_run_resumes_to_identical_scores(gsm8k_sample, tiny_model_dir, tiny_direction_dir, tmp_path):
    whole = tmp_path / "whole"
    assert main(score_args(gsm8k_sample, tiny_model_dir, tiny_direction_dir, whole)) == 0
    killed = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": SRC}
    proc = subprocess.Popen([sys.executable, "-m", "reasonsift.cli",
                             *score_args(gsm8k_sample, tiny_model_dir, tiny_direction_dir, killed)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not list((killed / "score" / "isotropic").glob("ckpt2/*.done")):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "scores.parquet").exists(), "the run finished before it could be killed"
    assert main(score_args(gsm8k_sample, tiny_model_dir, tiny_direction_dir, killed)) == 0
    assert pq.read_table(killed / "scores.parquet").equals(pq.read_table(whole / "scores.parquet"))


def test_resume_refuses_a_changed_config(gsm8k_sample, tiny_model_dir, tiny_direction_dir, tmp_path, capsys):
    run = tmp_path / "run"
    args = score_args(gsm8k_sample, tiny_model_dir, tiny_direction_dir, run, "data.limit=16")
    assert main(args) == 0
    assert main(args + ["--seed", "5"]) == 2
    assert "different config" in capsys.readouterr().err


BAD_ROWS = {
    "malformed": ('{"question": "a", "answer": "b"', "malformed JSON"),
    "missing": ('{"question": "what is 2+2?"}', "missing field 'answer'"),
    "empty": ('{"question": "", "answer": "4"}', "empty field 'question'"),
    # the schema is fixed by the first good row (GSM8K here), so a foreign row names what it lacks
    "unknown": ('{"foo": "x", "bar": "y"}', "missing field 'question'"),
}


@pytest.mark.parametrize("case", sorted(BAD_ROWS) + ["utf8"])
def test_bad_input_is_one_clear_line_or_a_quarantined_row(case, tiny_model_dir, gsm8k_sample, tmp_path, capsys):
    good = gsm8k_sample.read_bytes().splitlines(keepends=True)[:5]
    bad_line, reason = BAD_ROWS.get(case, (None, "not valid UTF-8"))
    bad = bad_line.encode() + b"\n" if bad_line else b'{"question": "caf\xe9", "answer": "1"}\n'
    data = tmp_path / "pool.jsonl"
    data.write_bytes(b"".join(good[:3]) + bad + b"".join(good[3:]))
    base = ["score", str(data), "--model", str(tiny_model_dir), "--quiet", "score.direction=isotropic",
            "score.num_isotropic=2", "score.long_tokens=16", "score.short_tokens=8"]
    assert main(base + ["--run", str(tmp_path / "strict")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "pool.jsonl:4" in err and reason in err
    assert main(base + ["--run", str(tmp_path / "lenient"), "--skip-bad-rows"]) == 0
    rejected = [json.loads(x) for x in (tmp_path / "lenient" / "rejected.jsonl").read_text().splitlines()]
    assert len(rejected) == 1 and rejected[0]["where"] == "pool.jsonl:4" and reason in rejected[0]["reason"]
    report = json.loads((tmp_path / "lenient" / "report.json").read_text())
    assert report["counts"]["rejected"] == 1 and report["counts"]["examples"] == 5
    assert report["loss_vectors_from"] == "isotropic" and report["direction"]["source"] == "isotropic"


def test_finetune_direction_when_no_theta_f(gsm8k_sample, tiny_model_dir, tmp_path):
    run = tmp_path / "run"
    assert main(["score", str(gsm8k_sample), "--model", str(tiny_model_dir), "--run", str(run), "--quiet",
                 "score.direction=finetune", "score.finetune_steps=3", "score.finetune_examples=8",
                 "score.finetune_lr=1e-3", "data.limit=12", *SMALL]) == 0
    report = json.loads((run / "report.json").read_text())
    assert report["direction"]["source"] == "finetune" and report["direction"]["norm"] > 0
    assert (run / "direction" / "theta_f.safetensors").exists()


def test_missing_direction_model_is_a_clear_error(gsm8k_sample, tiny_model_dir, tmp_path, capsys):
    assert main(["score", str(gsm8k_sample), "--model", str(tiny_model_dir), "--run", str(tmp_path / "r"),
                 "--quiet", "data.limit=4", "score.direction=model"]) == 2
    assert "--direction-model" in capsys.readouterr().err
    assert not (tmp_path / "r" / "score").exists()


def test_default_direction_without_theta_f_falls_back_to_isotropic(gsm8k_sample, tiny_model_dir, tmp_path, caplog):
    run = tmp_path / "r"
    assert main(["score", str(gsm8k_sample), "--model", str(tiny_model_dir), "--run", str(run), "--quiet",
                 "data.limit=4", "score.num_isotropic=2", "score.long_tokens=16", "score.short_tokens=8"]) == 0
    report = json.loads((run / "report.json").read_text())
    assert report["direction"]["source"] == "isotropic" and report["loss_vectors_from"] == "isotropic"
    assert "no --direction-model" in caplog.text


def test_scores_equal_a_plain_labels_forward(gsm8k_sample, tiny_model_dir, tiny_direction_dir, tmp_path):
    """base_loss_100 in scores.parquet is the HF ``model(input_ids, labels=)`` loss of the first N tokens."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from reasonsift.data.load import iter_examples
    from reasonsift.data.render import tokenize_example

    run = tmp_path / "run"
    assert main(score_args(gsm8k_sample, tiny_model_dir, tiny_direction_dir, run, "data.limit=10")) == 0
    scores = pq.read_table(run / "scores.parquet").to_pandas().set_index("id")
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    checked = 0
    for _, ex, _ in iter_examples(str(gsm8k_sample), limit=10):
        t = tokenize_example(tok, ex, max_response_tokens=16)  # score.short_tokens=16 in SMALL
        assert ex.id in scores.index
        ids = torch.tensor([t.prompt_ids + t.response_ids])
        labels = ids.clone()
        labels[0, : len(t.prompt_ids)] = -100
        with torch.no_grad():
            expected = float(model(input_ids=ids, labels=labels).loss)
        assert scores.loc[ex.id, "base_loss_100"] == pytest.approx(expected, abs=1e-4)
        assert scores.loc[ex.id, "n_response_tokens"] == t.n_response_tokens
        checked += 1
    assert checked == 10


def test_rerun_after_a_bad_input_error_in_the_same_folder(gsm8k_sample, tiny_model_dir, tmp_path, capsys):
    """A run that stopped on bad input wrote no scores, so the same folder takes the fixed command."""
    rows = gsm8k_sample.read_bytes().splitlines(keepends=True)[:6]
    data = tmp_path / "pool.jsonl"
    data.write_bytes(b"".join(rows[:2]) + b'{"question": "x"\n' + b"".join(rows[2:]))
    run = tmp_path / "run"
    base = ["score", str(data), "--model", str(tiny_model_dir), "--run", str(run), "--quiet",
            "score.num_isotropic=2", "score.long_tokens=16", "score.short_tokens=8"]
    assert main(base) == 2
    assert "pool.jsonl:3" in capsys.readouterr().err
    assert main(base + ["--skip-bad-rows"]) == 0
    report = json.loads((run / "report.json").read_text())
    assert report["counts"]["examples"] == 6 and report["counts"]["rejected"] == 1


def test_a_pool_of_only_bad_rows_is_an_error_with_the_rows_kept(tiny_model_dir, tmp_path, capsys):
    data = tmp_path / "pool.jsonl"
    data.write_text('{"question": "a"}\n{"question": "b"}\n', encoding="utf-8")
    run = tmp_path / "run"
    assert main(["score", str(data), "--model", str(tiny_model_dir), "--run", str(run), "--quiet",
                 "--skip-bad-rows", "score.num_isotropic=2"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "every row was rejected" in err
    assert len((run / "rejected.jsonl").read_text().splitlines()) == 2
    assert not (run / "scores.parquet").exists()


def test_report_records_the_columns_read(tiny_model_dir, tmp_path):
    rows = [{"question": f"What is {i}+{i}?", "solution": f"{i}+{i}={2 * i}",
             "code": "<think>" + "Adding the two numbers. " * 10 + f"</think> {2 * i}"} for i in range(4)]
    data = tmp_path / "sky.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    run = tmp_path / "run"
    assert main(["score", str(data), "--model", str(tiny_model_dir), "--run", str(run), "--quiet",
                 "score.direction=isotropic", "score.num_isotropic=2", "score.long_tokens=16",
                 "score.short_tokens=8"]) == 0
    fields = json.loads((run / "report.json").read_text())["fields"]
    assert fields == {"columns": {"prompt": "question", "response": "solution"}, "other_response_columns": ["code"]}


def test_two_processes_with_different_configs_on_one_folder(gsm8k_sample, tiny_model_dir, tiny_direction_dir,
                                                            tmp_path):
    """Started together on a fresh folder, exactly one runs; the folder then equals a single run's."""
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": SRC}
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    seeds = (42, 7)
    procs = [subprocess.Popen([sys.executable, "-m", "reasonsift.cli",
                               *score_args(gsm8k_sample, tiny_model_dir, tiny_direction_dir, run, "--seed", str(s), "data.limit=16")],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for s in seeds]
    results = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
    assert sorted(rc for rc, _ in results) == [0, 2], results
    winner = seeds[[rc for rc, _ in results].index(0)]
    refused = next(err for rc, err in results if rc == 2)
    assert len(refused.strip().splitlines()) == 1 and "Traceback" not in refused
    assert "in use by another score" in refused or "different config" in refused
    reference = tmp_path / "reference"
    assert main(score_args(gsm8k_sample, tiny_model_dir, tiny_direction_dir, reference, "--seed", str(winner),
                           "data.limit=16")) == 0
    assert pq.read_table(run / "scores.parquet").equals(pq.read_table(reference / "scores.parquet"))
    assert yaml.safe_load((run / "config.yaml").read_text())["score"]["seed"] == winner
    assert not (run / ".lock").exists()


def test_a_run_that_fails_validation_creates_nothing(gsm8k_sample, tiny_model_dir, tmp_path, capsys):
    run = tmp_path / "run"
    base = ["--run", str(run), "--quiet", "score.num_isotropic=2", "score.long_tokens=16", "score.short_tokens=8"]
    assert main(["score", str(tmp_path / "missing.jsonl"), "--model", str(tiny_model_dir), *base]) == 2
    assert "missing.jsonl" in capsys.readouterr().err
    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    for f in tiny_model_dir.iterdir():
        if f.suffix != ".safetensors":
            (no_weights / f.name).write_bytes(f.read_bytes())
    assert main(["score", str(gsm8k_sample), "--model", str(no_weights), *base]) == 2
    assert "no weights" in capsys.readouterr().err
    assert not run.exists()
    assert main(["score", str(gsm8k_sample), "--model", str(tiny_model_dir), "data.limit=8", *base]) == 0


def _pool_with_an_overlong_prompt(gsm8k_sample: Path, tmp_path: Path) -> Path:
    """5 GSM8K rows with a 4th whose prompt alone is longer than the tiny model's 2,048 positions."""
    good = gsm8k_sample.read_text().splitlines(keepends=True)[:5]
    long_row = json.dumps({"question": "How many apples did Tom pick on Monday? " * 400, "answer": "#### 3"})
    data = tmp_path / "pool.jsonl"
    listed = json.dumps({"question": "What is 1 + 2?", "answer": ["1 + 2 = 3", "#### 3"]})
    data.write_text("".join(good[:3]) + long_row + "\n" + "".join(good[3:]) + listed + "\n", encoding="utf-8")
    return data


def test_a_prompt_longer_than_the_model_is_rejected_not_scored(gsm8k_sample, tiny_model_dir, tmp_path, capsys,
                                                               caplog):
    data = _pool_with_an_overlong_prompt(gsm8k_sample, tmp_path)
    base = ["score", str(data), "--model", str(tiny_model_dir), "--quiet", "score.num_isotropic=2",
            "score.long_tokens=16", "score.short_tokens=8"]
    assert main(base + ["--run", str(tmp_path / "strict")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pool.jsonl:4" in err and "exceed the model's 2,048 positions" in err
    run = tmp_path / "lenient"
    assert main(base + ["--run", str(run), "--skip-bad-rows"]) == 0
    rejected = [json.loads(x) for x in (run / "rejected.jsonl").read_text().splitlines()]
    assert [r["where"] for r in rejected] == ["pool.jsonl:4"] and "2,048 positions" in rejected[0]["reason"]
    assert json.loads(rejected[0]["raw"])["question"].startswith("How many apples")
    scores = pq.read_table(run / "scores.parquet").to_pandas()
    assert list(scores["row_index"]) == [0, 1, 2, 4, 5, 6]
    report = json.loads((run / "report.json").read_text())
    assert report["counts"]["rejected"] == 1
    # the list-of-strings answer of the last row was joined: counted in report.json and on the console
    assert report["coerced"] == {"rows": 1, "fields": {"answer: list of strings joined by newlines": 1},
                                 "example": "pool.jsonl:7"}
    assert "1 rows had fields converted to text: answer: list of strings" in caplog.text


def test_a_tokenizer_without_chat_template_is_said_once_and_recorded(gsm8k_sample, tiny_model_dir, tmp_path, caplog):
    plain = tmp_path / "plain_model"
    plain.mkdir()
    for f in tiny_model_dir.iterdir():
        if f.name != "chat_template.jinja":
            (plain / f.name).write_bytes(f.read_bytes())
    config = json.loads((plain / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (plain / "tokenizer_config.json").write_text(json.dumps(config))
    run = tmp_path / "run"
    assert main(["score", str(gsm8k_sample), "--model", str(plain), "--run", str(run), "--quiet", "data.limit=4",
                 "score.num_isotropic=2", "score.long_tokens=16", "score.short_tokens=8"]) == 0
    assert caplog.text.count("the tokenizer has no chat template") == 1
    template = json.loads((run / "report.json").read_text())["template"]
    assert template["chat_template"] is False and "User: {prompt}" in template["note"]
