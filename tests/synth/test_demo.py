"""``reasonsift demo --quick`` end to end: θ₀ built from scratch, curate, train, evaluate, report."""

from __future__ import annotations

import json
import math

import pytest

from reasonsift.cli import main


def test_quick_demo_runs_end_to_end(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("REASONSIFT_CACHE", str(tmp_path / "cache"))  # build θ₀ from scratch
    out = tmp_path / "demo"
    assert main(["demo", "--methods", "temp", "nonsense", "--out", str(out)]) == 2  # refused before any work
    assert "nonsense" in capsys.readouterr().err and not out.exists()
    assert main(["demo", "--quick", "--out", str(out), "--quiet", "--methods", "temp", "random", "cft"]) == 0
    printed = capsys.readouterr().out
    assert "temp" in printed and "random" in printed and "cft" in printed and "Spearman" in printed
    results = json.loads((out / "demo_results.json").read_text())
    assert set(results["methods"]) == {"temp", "random", "cft"}
    budget = int(results["size"]["budget_fraction"] * results["size"]["pool"])
    # cft: the random subset minus traces whose final answer is wrong, trained on its critical tokens
    cft_rows = [json.loads(x) for x in (out / "critical" / "critical.jsonl").read_text().splitlines()]
    random_rows = [json.loads(x) for x in (out / "subsets" / "random.jsonl").read_text().splitlines()]
    assert {r["id"] for r in cft_rows} <= {r["id"] for r in random_rows}
    assert results["methods"]["cft"]["n"] == len(cft_rows) > 0
    assert not any(r["low_quality_kind"] == "wrong_step" for r in cft_rows)  # a wrong answer is no solution
    assert json.loads((out / "models" / "cft" / "train_report.json").read_text())["objective"] == "cft"
    for method, r in results["methods"].items():
        subset = out / "critical" / "critical.jsonl" if method == "cft" else out / "subsets" / f"{method}.jsonl"
        rows = [json.loads(x) for x in subset.read_text().splitlines()]
        if method != "cft":
            assert r["n"] == len(rows) == budget
        # The table's figures are those of the files it summarises: recount them from the files.
        assert r["low_quality_share"] == pytest.approx(sum(bool(x["low_quality"]) for x in rows) / len(rows))
        evaluated = [json.loads(x) for x in
                     (out / "models" / method / "eval" / "results.jsonl").read_text().splitlines()]
        assert r["accuracy"] == pytest.approx(sum(x["correct"][0] for x in evaluated) / len(evaluated))
        assert r["accuracy"] == pytest.approx(json.loads((out / "models" / method / "eval" / "metrics.json")
                                                         .read_text())["accuracy"])
        assert (out / "models" / method / "model.safetensors").exists()
    assert all(math.isfinite(v) for v in results["validation"].values())
    assert (out / "run" / "scores.parquet").exists() and (out / "run" / "selected.jsonl").exists()
    assert (out / "models" / "theta_0" / "eval" / "metrics.json").exists()  # θ₀'s folder may be the package's
    assert "synthetic reasoning world" in (out / "demo_report.html").read_text()
    # The run folder shows TEMP's selection (selected last).
    assert json.loads((out / "run" / "report.json").read_text())["selection"]["method"] == "temp"
    # θ₀ was cached: a second demo in another folder reuses it.
    assert len(list((tmp_path / "cache").glob("synth-base-*/model.safetensors.done"))) == 1
