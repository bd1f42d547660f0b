"""``reasonsift select`` / ``curate`` end to end on the tiny-model fixture."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from reasonsift.cli import main
from tests.conftest import gsm8k_lines

SCORE = ["score.direction=isotropic", "score.num_isotropic=3", "score.short_tokens=16", "score.long_tokens=48",
         "score.full_loss=true", "score.max_full_tokens=256", "--quiet"]
METHODS = ["temp", "random", "longest", "middle-perplexity", "difficulty", "full-loss", "s2l", "embedding"]


@pytest.fixture(scope="module")
def scored_run(tiny_model_dir, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("curated")
    data = root / "pool.jsonl"
    data.write_text("".join(gsm8k_lines(40)), encoding="utf-8")
    assert main(["curate", str(data), "--model", str(tiny_model_dir), "--run", str(root / "run"),
                 "--budget", "8", *SCORE]) == 0
    return root / "run"


@pytest.mark.parametrize("method", METHODS)
def test_every_method_runs_through_the_cli(scored_run, method, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(scored_run, run)
    assert main(["select", str(run), "--budget", "8", "--method", method, "--quiet"]) == 0
    lines = (run / "selected.jsonl").read_text().splitlines()
    assert len(lines) == 8
    scores = pq.read_table(run / "scores.parquet").to_pandas()
    assert scores["selected"].sum() == 8
    chosen = set(scores.loc[scores["selected"], "row_index"])
    source = (scored_run.parent / "pool.jsonl").read_text().splitlines()
    assert lines == [source[i] for i in sorted(chosen)]  # verbatim and in input order
    report = json.loads((run / "report.json").read_text())
    assert report["selection"]["method"] == method and report["selection"]["n_selected"] == 8
    assert report["counts"]["examples"] == 40  # the scoring report is kept
    assert (run / "report.html").stat().st_size > 1000 and "# Curated subset" in (run / "README.md").read_text()


@pytest.mark.parametrize("method", ["random", "temp"])
def test_token_budget_is_met_or_the_report_says_why(scored_run, tmp_path, method):
    run = tmp_path / "run"
    shutil.copytree(scored_run, run)
    assert main(["select", str(run), "--budget-tokens", "2000", "--method", method, "--quiet"]) == 0
    scores = pq.read_table(run / "scores.parquet").to_pandas()
    used = int(scores.loc[scores["selected"], "n_response_tokens"].sum())
    report = json.loads((run / "report.json").read_text())["selection"]
    assert report["selected_tokens"] == used and used <= 2000
    if method == "random":  # the whole pool is eligible: the slack is less than any unselected example
        assert 2000 - used < scores.loc[~scores["selected"], "n_response_tokens"].min()
    elif 2000 - used >= scores.loc[~scores["selected"], "n_response_tokens"].min():
        # TEMP only takes hard examples; when they run out, the report explains the shortfall.
        assert any("eligible set" in note for note in report["notes"])


def test_same_seed_same_subset_other_seed_differs(scored_run, tmp_path):
    outs = {}
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        run = tmp_path / name
        shutil.copytree(scored_run, run)
        assert main(["select", str(run), "--budget", "8", "--method", "random", "--seed", str(seed), "--quiet"]) == 0
        outs[name] = (run / "selected.jsonl").read_bytes()
    assert outs["a"] == outs["b"] and outs["a"] != outs["c"]


def _write(fmt: str, rows: list[dict], raw_lines: list[str], path: Path) -> Path:
    if fmt == "jsonl":
        path = path.with_suffix(".jsonl")
        path.write_text("\n".join(raw_lines) + "\n", encoding="utf-8")
    elif fmt == "json":
        path = path.with_suffix(".json")
        path.write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")
    elif fmt == "parquet":
        import pyarrow as pa

        path = path.with_suffix(".parquet")
        pq.write_table(pa.Table.from_pylist(rows), path)
    else:
        import datasets

        datasets.Dataset.from_list(rows).save_to_disk(str(path))
    return path


@pytest.mark.parametrize("fmt", ["jsonl", "json", "parquet", "disk"])
def test_selected_rows_round_trip_every_format(fmt, tiny_model_dir, tmp_path):
    rows = [json.loads(x) for x in gsm8k_lines(12)]
    for i, r in enumerate(rows):
        r["extra"] = {"k": i, "note": "naïve ✓"}  # nested and non-ASCII values survive
    # Odd spacing and key order in the .jsonl lines must be kept byte for byte.
    raw = [json.dumps(r, ensure_ascii=False, separators=(", ", " : ")) for r in rows]
    data = _write(fmt, rows, raw, tmp_path / "pool")
    run = tmp_path / "run"
    assert main(["curate", str(data), "--model", str(tiny_model_dir), "--run", str(run), "--budget", "5",
                 "--method", "random", "score.direction=isotropic", "score.num_isotropic=2",
                 "score.long_tokens=16", "score.short_tokens=8", "--quiet"]) == 0
    out = (run / "selected.jsonl").read_text(encoding="utf-8").splitlines()
    chosen = sorted(pq.read_table(run / "scores.parquet").to_pandas().query("selected")["row_index"])
    assert len(out) == 5
    if fmt == "jsonl":
        assert out == [raw[i] for i in chosen]
    else:
        assert [json.loads(x) for x in out] == [rows[i] for i in chosen]
