"""``reasonsift evaluate`` on a tiny model: per-item results, recounted accuracy, resume, errors."""

from __future__ import annotations

import json

import pytest

from reasonsift.cli import main
from tests.conftest import gsm8k_lines


@pytest.fixture()
def gsm8k20(tmp_path):
    path = tmp_path / "gsm8k20.jsonl"
    path.write_text("".join(gsm8k_lines(20)), encoding="utf-8")
    return path


def test_accuracy_matches_a_recount_of_the_per_item_results(tiny_model_dir, gsm8k20, tmp_path):
    out = tmp_path / "eval"
    assert main(["evaluate", "--model", str(tiny_model_dir), "--benchmark", str(gsm8k20), "--out", str(out),
                 "--quiet", "evaluate.max_new_tokens=24", "evaluate.batch_size=8"]) == 0
    rows = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(rows) == 20 and metrics["n_items"] == 20
    assert metrics["accuracy"] == pytest.approx(sum(r["correct"][0] for r in rows) / 20)
    golds = [json.loads(x)["answer"].split("####")[-1].strip() for x in gsm8k_lines(20)]
    assert [r["gold"] for r in rows] == [g.replace(",", "") for g in golds]
    assert all(len(r["generations"]) == 1 and len(r["correct"]) == 1 for r in rows)
    # An interrupted evaluation resumes: drop the last 5 results and a half-written line, rerun.
    lines = (out / "results.jsonl").read_text().splitlines()
    (out / "results.jsonl").write_text("\n".join(lines[:15]) + "\n" + lines[15][:20])
    assert main(["evaluate", "--model", str(tiny_model_dir), "--benchmark", str(gsm8k20), "--out", str(out),
                 "--quiet", "evaluate.max_new_tokens=24", "evaluate.batch_size=8"]) == 0
    again = json.loads((out / "metrics.json").read_text())
    assert again["n_items"] == 20 and again["accuracy"] == metrics["accuracy"]


def test_sampled_pass_at_k(tiny_model_dir, gsm8k20, tmp_path):
    out = tmp_path / "eval"
    assert main(["evaluate", "--model", str(tiny_model_dir), "--benchmark", str(gsm8k20), "--out", str(out),
                 "--samples", "2", "--limit", "4", "--quiet", "evaluate.temperature=1.0",
                 "evaluate.max_new_tokens=8"]) == 0
    rows = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all(len(r["generations"]) == 2 for r in rows)
    assert "pass@2" in json.loads((out / "metrics.json").read_text())


def test_clear_errors(tiny_model_dir, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "2+2?"}\n')
    assert main(["evaluate", "--model", str(tiny_model_dir), "--benchmark", str(bad), "--quiet"]) == 2
    assert "gold answer" in capsys.readouterr().err
    empty = tmp_path / "no_weights"
    empty.mkdir()
    (empty / "config.json").write_text((tiny_model_dir / "config.json").read_text())
    good = tmp_path / "good.jsonl"
    good.write_text('{"question": "2+2?", "answer": "#### 4"}\n')
    assert main(["evaluate", "--model", str(empty), "--benchmark", str(good), "--quiet"]) == 2
    assert "no weights" in capsys.readouterr().err
