"""``reasonsift select`` / ``curate`` end to end on the tiny-model fixture."""

from __future__ import annotations

import json
import logging
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


@pytest.mark.parametrize("method", ["random", "temp", "s2l", "embedding"])
def test_same_seed_same_bytes_other_seed_differs(scored_run, tmp_path, method):
    outs = {}
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        run = tmp_path / name
        shutil.copytree(scored_run, run)
        assert main(["select", str(run), "--budget", "8", "--method", method, "--seed", str(seed), "--quiet"]) == 0
        scores = pq.read_table(run / "scores.parquet").to_pandas()
        outs[name] = ((run / "selected.jsonl").read_bytes(), scores["cluster"].tolist(), scores["selected"].tolist())
    assert outs["a"] == outs["b"]  # selected.jsonl byte for byte, and the cluster / selected columns
    if method == "random":
        assert outs["a"][0] != outs["c"][0]


def _own_copy(scored_run: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the run and of its input (same file name, so the same fingerprint), wired together."""
    (tmp_path / "data").mkdir()
    pool = tmp_path / "data" / "pool.jsonl"
    shutil.copy(scored_run.parent / "pool.jsonl", pool)
    run = tmp_path / "run"
    shutil.copytree(scored_run, run)
    _set_input(run, str(pool))
    return run, pool


def _set_input(run: Path, value: str) -> None:
    report = json.loads((run / "report.json").read_text())
    report["input"] = value
    (run / "report.json").write_text(json.dumps(report))


def _snapshot(run: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(run.iterdir()) if p.is_file()}


def test_relative_input_resolves_from_the_current_directory(scored_run, tmp_path, monkeypatch, capsys):
    run, pool = _own_copy(scored_run, tmp_path)
    _set_input(run, "pool.jsonl")  # an old run: the path as it was typed
    monkeypatch.chdir(pool.parent)
    assert main(["select", str(run), "--budget", "5", "--method", "random", "--quiet"]) == 0
    first = (run / "selected.jsonl").read_bytes()
    assert len(first.splitlines()) == 5
    monkeypatch.chdir(tmp_path)  # elsewhere the relative path names nothing: a clear refusal
    before = _snapshot(run)
    assert main(["select", str(run), "--budget", "6", "--method", "random", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "pool.jsonl: the scored input file is not there" in err and len(err.strip().splitlines()) == 1
    assert _snapshot(run) == before
    _set_input(run, str(pool))  # new runs record an absolute path: any directory works
    assert main(["select", str(run), "--budget", "5", "--method", "random", "--quiet"]) == 0
    assert (run / "selected.jsonl").read_bytes() == first


def test_edited_input_is_refused(scored_run, tmp_path, capsys):
    run, pool = _own_copy(scored_run, tmp_path)
    lines = pool.read_text(encoding="utf-8").splitlines(keepends=True)
    pool.write_text("".join(lines[1:] + lines[:1]), encoding="utf-8")  # same rows, another order
    before = _snapshot(run)
    assert main(["select", str(run), "--budget", "5", "--method", "random", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "changed since" in err and "score it again" in err and len(err.strip().splitlines()) == 1
    assert _snapshot(run) == before  # nothing written


def test_a_failed_write_leaves_the_run_folder_as_it_was(scored_run, tmp_path, monkeypatch, capsys):
    from reasonsift.selection import run_selection as rs

    run, _ = _own_copy(scored_run, tmp_path)
    before = _snapshot(run)

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(rs, "write_selected", fail)
    with pytest.raises(OSError, match="disk full"):  # --debug re-raises what the CLI reports in one line
        main(["select", str(run), "--budget", "6", "--method", "longest", "--quiet", "--debug"])
    assert _snapshot(run) == before
    assert main(["select", str(run), "--budget", "6", "--method", "longest", "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "reasonsift select: error: OSError: disk full (rerun with --debug for the traceback)"
    assert _snapshot(run) == before  # scores.parquet, config.yaml, report.json untouched


def test_write_selected_counts_the_rows_it_wrote(tmp_path):
    from reasonsift.data.records import DataError
    from reasonsift.selection.run_selection import write_selected

    data = tmp_path / "pool.jsonl"
    data.write_text("".join(gsm8k_lines(6)), encoding="utf-8")
    out = tmp_path / "selected.jsonl"
    assert write_selected(str(data), "train", {1, 4}, out) == 2
    kept = out.read_bytes()
    with pytest.raises(DataError, match="found 2 of the 3 selected rows"):
        write_selected(str(data), "train", {0, 5, 6}, out)  # row 6 does not exist
    assert out.read_bytes() == kept and [p.name for p in tmp_path.iterdir()] == ["pool.jsonl", "selected.jsonl"]


def test_embedding_items_use_the_whole_response(scored_run, tiny_model_dir):
    """The token shards hold only the scoring window (long_tokens=48); the embedding baseline must not."""
    from reasonsift.config import DataConfig
    from reasonsift.models import load_tokenizer
    from reasonsift.selection.run_selection import embedding_items

    scores = pq.read_table(scored_run / "scores.parquet").to_pandas()
    tok = load_tokenizer(str(tiny_model_dir))
    rows = scores["row_index"].tolist()[::-1]  # any order: items follow row_index
    items = embedding_items(str(scored_run.parent / "pool.jsonl"), DataConfig(), tok, rows, 16384)
    n_response = dict(zip(scores["row_index"], scores["n_response_tokens"]))
    assert [len(it.response_ids) for it in items] == [n_response[r] for r in rows]
    assert max(len(it.response_ids) for it in items) > 48
    short = embedding_items(str(scored_run.parent / "pool.jsonl"), DataConfig(), tok, rows, 64)
    assert all(len(it.prompt_ids) + len(it.response_ids) <= 64 for it in short)
    assert [it.prompt_ids for it in short] == [it.prompt_ids[:64] for it in items]


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


def test_a_second_selection_keeps_the_first(scored_run, tmp_path, capsys):
    """select twice (TEMP, then random): both are kept under RUN/select/, the latest is also at the top."""
    run = tmp_path / "run"
    shutil.copytree(scored_run, run)
    assert main(["select", str(run), "--budget", "8", "--quiet"]) == 0
    assert "(kept in " + str(run / "select" / "temp-8-seed42") + ")" in capsys.readouterr().out
    assert main(["select", str(run), "--budget", "6", "--method", "random", "--quiet"]) == 0
    temp, rnd = run / "select" / "temp-8-seed42", run / "select" / "random-6-seed42"
    for folder, n, method in ((temp, 8, "temp"), (rnd, 6, "random")):
        assert len((folder / "selected.jsonl").read_text().splitlines()) == n
        assert json.loads((folder / "report.json").read_text())["selection"]["method"] == method
        assert f"reasonsift selection: {method}" in (folder / "report.html").read_text()
        assert f"with `{method}`" in (folder / "README.md").read_text()
        flags = pq.read_table(folder / "selection.parquet").to_pandas()
        assert flags["selected"].sum() == n and len(flags) == 40
    # the top level is the latest selection, byte for byte
    assert (run / "selected.jsonl").read_bytes() == (rnd / "selected.jsonl").read_bytes()
    assert (run / "report.html").read_text() == (rnd / "report.html").read_text()
    assert json.loads((run / "report.json").read_text())["selection"]["kept_in"] == "select/random-6-seed42"


def test_report_shows_the_runs_warnings_theta_rnd_and_direction(scored_run, tmp_path, caplog):
    """Every warning select printed is in report.json's notes and report.html; the header names θ_rnd and θ_f."""
    run = tmp_path / "run"
    shutil.copytree(scored_run, run)
    (run / "score" / "manifest.json").unlink()  # select then warns that the input cannot be checked
    with caplog.at_level(logging.WARNING, logger="reasonsift"):
        assert main(["select", str(run), "--budget", "8", "--quiet"]) == 0
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("no scoring manifest" in w for w in warned)
    report = json.loads((run / "report.json").read_text())
    assert set(warned) <= set(report["selection"]["notes"])
    page = (run / "report.html").read_text()
    notes = page[page.index("<h2>Notes</h2>"):page.index("<h2>Difficulty")]
    assert "no scoring manifest" in notes and "<li>none</li>" not in notes
    assert "θ_rnd (difficulty)</th><td>Gaussian checkpoint" in page
    assert "no θ_f was given, so the loss vectors come from the nested Gaussian checkpoints" in page
    theta = report["theta_rnd"]
    if not theta["in_range"]:  # the θ_rnd warning is a note too
        assert "no Gaussian checkpoint has a mean-loss ratio" in notes
    # tokens: both references, words that fit the sign
    t = report["tokens"]
    tokens = page[page.index("<h2>Tokens scored"):]
    for ref in ("full_trace_all_checkpoints", "full_trace_once"):
        word = "fewer than" if t["scored"] <= t[ref] else "as many as"
        assert f"{t[ref]:,}" in tokens and word in tokens
    assert "-" not in tokens.split("TEMP scored", 1)[1].split("</p>")[0].replace("θ₀", "")  # no "−218% fewer"
