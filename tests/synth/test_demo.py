"""``reasonsift demo --quick`` end to end: θ₀ built from scratch, curate, train, evaluate, report."""

from __future__ import annotations

import json
import math

import pytest

from reasonsift.cli import main


def test_quick_demo_v1_runs_end_to_end(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("REASONSIFT_CACHE", str(tmp_path / "cache"))  # build θ₀ from scratch
    out = tmp_path / "demo"
    assert main(["demo", "--methods", "temp", "nonsense", "--out", str(out)]) == 2  # refused before any work
    assert "nonsense" in capsys.readouterr().err and not out.exists()
    assert main(["demo", "--quick", "--world", "v1", "--out", str(out), "--quiet", "--methods", "temp", "random",
                 "cft"]) == 0
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


def test_quick_demo_v2_shares_one_world_between_seeds(tmp_path, monkeypatch):
    """World v2 at the quick size: the full arm, the numbers-mask CFT arm, radii set from ‖θ_f − θ₀‖,
    the world's properties, and a second seed that reuses the first one's pool, θ_f and scores."""
    from reasonsift.synth.demo import direction_norm, run_demo
    from reasonsift.synth.demo_presets import QUICK

    monkeypatch.setenv("REASONSIFT_CACHE", str(tmp_path / "cache"))
    shared = tmp_path / "shared"
    first = run_demo(tmp_path / "s0", seed=0, progress=False, methods=("temp", "random", "full", "cft-numbers"),
                     shared=shared, world_seed=0, world="v2", quick=True)
    theta_0 = next((tmp_path / "cache").glob("synth-base-*"))
    distance = direction_norm(theta_0, shared / "models" / "theta_f")
    assert first["theta_f_distance"] == pytest.approx(distance) and distance > 0
    assert first["radii"] == pytest.approx([QUICK.relative_radii[0] * distance, QUICK.relative_radii[1] * distance])
    import yaml

    score = yaml.safe_load((shared / "run" / "config.yaml").read_text())["score"]
    assert [score["min_radius"], score["final_radius"]] == pytest.approx(first["radii"])  # what TEMP scored with
    p = first["properties"]
    assert p["window_share"] == pytest.approx(QUICK.short_tokens / p["median_trace_tokens"])
    assert p["median_trace_tokens"] > 3 * QUICK.short_tokens  # long traces: the early window is a prefix
    # numbers masks: the random subset's rows, the share of masked tokens in (0, 1)
    assert 0 < first["methods"]["cft-numbers"]["critical_share"] < 1
    assert first["methods"]["full"]["n"] == QUICK.pool
    units = {f: f.stat().st_mtime for f in (shared / "run" / "score").rglob("*.done")}  # every scored unit
    assert len(units) > 5
    second = run_demo(tmp_path / "s1", seed=1, progress=False, methods=("temp", "random"), shared=shared, world_seed=0,
                      world="v2", quick=True)
    # scored once for both seeds: no unit was redone (selection rewrites scores.parquet's columns, not the units)
    assert {f: f.stat().st_mtime for f in (shared / "run" / "score").rglob("*.done")} == units
    assert second["validation"] == first["validation"]
    assert (shared / "run" / "select" / "random-12-seed1").is_dir() and (shared / "run" / "select" / "random-12-seed0").is_dir()
    assert "seed" in second and second["world_seed"] == 0


def test_v1_presets_are_the_recorded_ones():
    """World v1's presets reproduce the settings issue 5's table (BENCHMARKS.md) was measured with."""
    from reasonsift.synth.demo_presets import V1_FULL, V1_QUICK, V1_VALIDATION
    from reasonsift.synth.world import BaseRecipe

    common = dict(world="v1", pool=1000, eval_per_cell=5, budget_fraction=0.1, num_checkpoints=8, short_tokens=32,
                  long_tokens=512, max_new_tokens=448, max_length=768, noise="fixed", isotropic_std=(0.015, 0.12),
                  relative_radii=None, radii=(1.0, 10.0), eval_batch_size=64, max_full_tokens=512,
                  critical_alternatives=2, critical_max_tokens=512, base=BaseRecipe(), group_by_length=False)
    for preset, own in ((V1_FULL, dict(theta_f_epochs=4.0, subset_epochs=40.0, learning_rate=2e-3, batch_size=16)),
                        (V1_VALIDATION, dict(theta_f_epochs=6.0, subset_epochs=60.0, learning_rate=3e-3, batch_size=32)),
                        (V1_QUICK, dict(pool=200, eval_per_cell=1, theta_f_epochs=1.0, subset_epochs=3.0,
                                        learning_rate=3e-3, batch_size=32, num_checkpoints=3, max_new_tokens=100,
                                        critical_alternatives=1, critical_max_tokens=60,
                                        base=BaseRecipe(steps=60, corpus_lines=5_000, seq_len=128)))):
        for key, value in {**common, **own}.items():
            assert getattr(preset, key) == value, (preset, key)
