"""The Python API runs the same stages as the CLI and records the same configs."""

from __future__ import annotations

import json

import pyarrow.parquet as pq

import reasonsift
from reasonsift.cli import main
from reasonsift.config import load_config

SMALL = {"score.num_isotropic": 2, "score.short_tokens": 8, "score.long_tokens": 16, "data.limit": 8}


def test_api_score_and_select_equal_the_cli(gsm8k_sample, tiny_model_dir, tiny_direction_dir, tmp_path):
    api_run, cli_run = tmp_path / "api", tmp_path / "cli"
    report = reasonsift.score(gsm8k_sample, model=str(tiny_model_dir), run=api_run,
                              direction_model=str(tiny_direction_dir),
                              overrides={**SMALL, "score.num_directional": 2}, progress=False)
    assert report["counts"]["examples"] == 8 and report["command"].startswith("reasonsift.score(")
    assert main(["score", str(gsm8k_sample), "--model", str(tiny_model_dir), "--direction-model",
                 str(tiny_direction_dir), "--run", str(cli_run), "--quiet", "score.num_directional=2",
                 *(f"{k}={v}" for k, v in SMALL.items())]) == 0
    assert pq.read_table(api_run / "scores.parquet").equals(pq.read_table(cli_run / "scores.parquet"))
    sel = reasonsift.select(api_run, budget=3, method="longest", progress=False)
    assert sel["n_selected"] == 3 and len((api_run / "selected.jsonl").read_text().splitlines()) == 3


def test_system_prompt_with_quotes_reaches_the_config_unchanged(gsm8k_sample, tiny_model_dir, tmp_path):
    prompt = """Think "step by step"; it's: fine"""
    run = tmp_path / "r"
    assert main(["score", str(gsm8k_sample), "--model", str(tiny_model_dir), "--run", str(run), "--quiet",
                 "--system-prompt", prompt, *(f"{k}={v}" for k, v in SMALL.items())]) == 0
    assert load_config(["data"], run / "config.yaml")["data"].system_prompt == prompt
    assert "--system-prompt" in json.loads((run / "report.json").read_text())["command"]


def test_overrides_are_told_from_paths_by_their_form_not_the_filesystem(tmp_path, monkeypatch):
    from reasonsift.cli import split_overrides

    monkeypatch.chdir(tmp_path)  # none of these paths exists
    words = ["runs/a=b.jsonl", "./x=1.jsonl", "pool.jsonl", "score.seed=3", "budget=5", "model.model=/m/a=b"]
    assert split_overrides(words) == (["runs/a=b.jsonl", "./x=1.jsonl", "pool.jsonl"],
                                       ["score.seed=3", "budget=5", "model.model=/m/a=b"])


def test_api_keyword_arguments_become_the_same_configs_as_cli_flags():
    from reasonsift import api

    got = api.resolve_configs(["data", "model", "score"], None,
                       {"model.model": "m", "score.seed": 3, "data.fields": ("prompt=q", "response=a"),
                        "data.skip_bad_rows": False, "data.limit": None}, {"score.long_tokens": 64})
    want = load_config(["data", "model", "score"], None,
                       ["model.model=m", "score.seed=3", "data.fields=prompt=q,response=a", "score.long_tokens=64"])
    assert got == want
