"""The selection stage: ``reasonsift select RUN --budget B [--method temp]``.

Reads ``RUN/scores.parquet``, chooses a subset with the configured method, and writes:
- ``RUN/selected.jsonl``: the chosen input rows exactly as they were (a ``.jsonl`` line is copied
  byte for byte; other formats are written as canonical JSON of the unchanged row), in input order;
- ``RUN/scores.parquet`` with ``cluster`` and ``selected`` columns added;
- ``RUN/report.json`` with a ``selection`` section added to the scoring report; ``RUN/report.html`` for people;
- ``RUN/README.md``, a dataset card naming the source data, scorer, config, budget and seed;
- the same files (and ``selection.parquet``: id, cluster, selected) in ``RUN/select/<method>-<budget>-seed<seed>/``,
  so a second ``select`` (another method or budget) keeps the first; the top-level files are the latest.

The input is read again (for the rows, and for the embedding baseline's tokens) from the path the
scoring report recorded; it must still match the fingerprint in ``RUN/score/manifest.json``, or
``select`` refuses, since row indices into an edited file point at the wrong rows.
``selected.jsonl`` is written first: every later file describes a selection that is already on
disk, so a failure part-way never leaves a report or flags for rows that were not written.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from reasonsift.config import ConfigError, DataConfig, SelectConfig, config_to_dict, make_config
from reasonsift.data.formats import iter_rows
from reasonsift.data.load import iter_examples, parse_field_overrides
from reasonsift.data.records import DataError
from reasonsift.runfolder import (RunPaths, input_fingerprint, read_json, save_config, write_atomic,
                                  write_json_atomic, write_text_atomic)
from reasonsift.scoring.signals import compute_signals
from reasonsift.selection.select import select
from reasonsift.selection.report import write_report_html

logger = logging.getLogger(__name__)


def resolve_input(recorded: str, paths: RunPaths) -> str:
    """The scored input to read again, checked against the scoring manifest's fingerprint.

    recorded: the scoring report's ``input`` (an absolute path for new runs, the hub id for hub data)
    or the path ``curate`` was given. A relative path (older runs stored it as typed) is resolved
    against the current directory. Raises ``DataError`` when the file is gone or its fingerprint
    differs from the one scored: row indices into another file would pick the wrong rows.
    """
    path = Path(recorded).expanduser()
    data = str(path.resolve()) if path.exists() else str(recorded)
    if not paths.manifest.exists():
        logger.warning("%s: no scoring manifest, so the input %s cannot be checked against what was scored",
                       paths.root, data)
        return data
    scored = read_json(paths.manifest).get("input")
    if scored is None:
        return data
    if not path.exists() and not str(scored).startswith("hub:"):
        raise DataError(f"{recorded}: the scored input file is not there (relative paths are read from "
                        f"{Path.cwd()}); restore it, or run select from the folder it was scored from")
    current = input_fingerprint(data)
    if current != scored:
        raise DataError(f"{data} changed since {paths.root} was scored (fingerprint {current}, scored {scored}); "
                        "score it again into a new --run folder")
    return data


def embedding_items(data: str, data_cfg: DataConfig, tokenizer: Any, row_index: list[int],
                    max_tokens: int) -> list[Any]:
    """One ``Tokenized`` per ``row_index`` (in that order): prompt + the *whole* response, cut to ``max_tokens``.

    The token shards hold only the scoring window (≤ long_tokens of the response); the official
    embedding baseline embeds the whole text up to 16,384 tokens, so the input is tokenized again
    with the same rendering as scoring (``tokenize_example``, same system prompt and fields).
    """
    from reasonsift.data.render import Tokenized, tokenize_example

    where = {int(r): i for i, r in enumerate(row_index)}
    items: list[Any] = [None] * len(where)
    for _, ex, _ in iter_examples(data, parse_field_overrides(data_cfg.fields), data_cfg.split,
                                  data_cfg.skip_bad_rows, data_cfg.limit):
        if ex is None or ex.row_index not in where:
            continue
        tk = tokenize_example(tokenizer, ex, data_cfg.system_prompt)
        # plain truncation of the whole sequence, as the official tokenizer(max_length=...) call does
        prompt = tk.prompt_ids[:max_tokens]
        items[where[ex.row_index]] = Tokenized(prompt, tk.response_ids[: max_tokens - len(prompt)])
    missing = [r for r, i in where.items() if items[i] is None]
    if missing:
        raise DataError(f"{data}: {len(missing)} scored row(s) are no longer in the input (first row index "
                        f"{missing[0]})")
    return items


def _embeddings(data: str, scoring: dict[str, Any], saved: dict[str, Any], sel: SelectConfig,
                row_index: list[int], progress: bool) -> Any:
    """Embed every scored example with θ₀ (only the embedding baseline needs this); rows follow ``row_index``."""
    from reasonsift.config import ModelConfig
    from reasonsift.models import load_model, load_tokenizer
    from reasonsift.selection.embedding import embed_items

    mc = make_config(ModelConfig, saved.get("model", {}), "model")
    tokenizer = load_tokenizer(scoring["model"], mc.trust_remote_code)
    items = embedding_items(data, make_config(DataConfig, saved.get("data", {}), "data"), tokenizer, row_index,
                            sel.embedding_max_tokens)
    model = load_model(scoring["model"], mc)
    return embed_items(model, items, sel.embedding_batch_tokens, progress)


def write_selected(data: str, split: str, row_indices: set[int], out: Path) -> int:
    """Stream the input again and copy the chosen rows verbatim, in input order; returns rows written.

    Raises ``DataError`` (and leaves ``out`` untouched) when fewer rows were found than chosen: the
    input no longer has the rows that were scored.
    """
    written = 0

    def write(tmp: Path) -> None:
        nonlocal written
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            for raw in iter_rows(data, split):
                if raw.index in row_indices:
                    f.write(raw.raw + "\n")
                    written += 1
        if written != len(row_indices):
            raise DataError(f"{data}: found {written} of the {len(row_indices)} selected rows; the input "
                            "has fewer rows than when it was scored")

    write_atomic(out, write)
    return written


def dataset_card(scoring: dict[str, Any], report: dict[str, Any], configs: dict[str, Any]) -> str:
    """A short dataset card for the curated subset (provenance a user can publish with it)."""
    from reasonsift.scoring.cost import token_cost_lines

    sel = configs["select"]
    sources = "\n".join(f"| {s} | {v.get('pool', '')} | {v.get('selected', '')} |"
                        for s, v in sorted(report.get("per_source", {}).items()))
    return f"""---
tags: [reasonsift, data-selection, reasoning]
---
# Curated subset: {report['n_selected']} examples selected with `{report['method']}`

- **Source data**: `{scoring.get('input')}` ({scoring['counts']['examples']} examples scored, {scoring['counts']['rejected']} rejected)
- **Scorer model (θ₀)**: `{scoring.get('model')}`; direction: {scoring.get('direction', {}).get('source')}
- **Budget**: {sel.budget if sel.budget is not None else f"{sel.budget_tokens} response tokens"}; selected {report['n_selected']} examples, {report['selected_tokens']:,} response tokens
- **Seed**: {sel.seed}
- **Tokens scored**: {scoring['tokens']['scored']:,} ({'; '.join(token_cost_lines(scoring['tokens']))})
- **Command**: `{report.get('command', '')}`

| source | pool | selected |
|---|---|---|
{sources}

Rows in `selected.jsonl` are the input rows unchanged, in input order. Scores, clusters and the
selection flag per example are in `scores.parquet`; the full config is in `config.yaml`.
"""


def selection_name(sel: SelectConfig) -> str:
    """The folder name a selection is kept under: ``temp-100-seed42``, ``random-50000tok-seed42``."""
    budget = f"{sel.budget}" if sel.budget is not None else f"{sel.budget_tokens}tok"
    return f"{sel.method}-{budget}-seed{sel.seed}"


def run_selection(run: str | Path, configs: dict[str, Any], command: str = "", progress: bool = True,
                  data: str | None = None) -> dict[str, Any]:
    """Select from a scored run folder; returns the selection report.

    data: the input as ``curate`` was given it; by default the scoring report's ``input``.
    Each selection is kept in ``RUN/select/<method>-<budget>-seed<seed>/`` (a second ``select`` with
    another method or budget adds a folder, it does not overwrite the first); the latest one is also
    written to ``RUN/selected.jsonl``, ``RUN/report.html`` etc., where the other stages read it. Every
    warning logged on the way is in the selection report's notes.
    """
    from reasonsift.run_notes import collect_warnings

    with collect_warnings() as warnings:
        return _select(run, configs, command, progress, data, warnings)


def _select(run: str | Path, configs: dict[str, Any], command: str, progress: bool, data: str | None,
            warnings: list[str]) -> dict[str, Any]:
    paths = RunPaths(Path(run))
    if not paths.scores.exists() or not paths.report.exists():
        raise ConfigError(f"{paths.root}: no scores.parquet/report.json; run `reasonsift score` first")
    sel = configs["select"]
    scoring = {k: v for k, v in read_json(paths.report).items() if k != "selection"}
    if not (data or scoring.get("input")):
        raise ConfigError(f"{paths.report} names no input; run `reasonsift score` again")
    data = resolve_input(data or scoring["input"], paths)
    saved = (yaml.safe_load(paths.config.read_text()) if paths.config.exists() else None) or {}
    table = pq.read_table(paths.scores)
    scores = table.drop([c for c in ("cluster", "selected") if c in table.column_names]).to_pandas()
    embeddings = None
    if sel.method == "embedding":
        embeddings = _embeddings(data, scoring, saved, sel, scores["row_index"].astype(int).tolist(), progress)
    selection = select(scores, sel, embeddings)
    name = selection_name(sel)
    kept = paths.selection(name)
    report = {**selection.report, "command": command, "kept_in": str(Path("select") / name)}
    # warnings logged while selecting (the input check, the embedding model ...) are notes too
    report["notes"] = list(report.get("notes", [])) + [w for w in warnings if w not in report.get("notes", [])]
    row_indices = set(scores.loc[selection.selected, "row_index"].astype(int))
    # selected.jsonl first: the files written after it only describe a selection already on disk
    write_selected(data, saved.get("data", {}).get("split", "train"), row_indices, kept / "selected.jsonl")
    flags = pa.table({"id": scores["id"].astype(str).tolist(),
                      "cluster": pa.array(selection.cluster, pa.int32()),
                      "selected": pa.array(selection.selected, pa.bool_())})
    write_atomic(kept / "selection.parquet", lambda p: pq.write_table(flags, p))
    signals = compute_signals(scores, scoring.get("theta_rnd"), selection.cluster, sel.min_response_tokens, sel.seed,
                              selection.selected)
    full_report = {**scoring, "selection": report, "signals": signals}
    card = dataset_card(scoring, report, configs)
    for folder in (kept, paths.root):  # the kept copy, then the latest at the top of RUN
        if folder == paths.root:
            write_atomic(paths.selected, lambda p: shutil.copyfile(kept / "selected.jsonl", p))
            out = pa.Table.from_pandas(scores, preserve_index=False) \
                .append_column("cluster", pa.array(selection.cluster, pa.int32())) \
                .append_column("selected", pa.array(selection.selected, pa.bool_()))
            write_atomic(paths.scores, lambda p: pq.write_table(out, p))
            save_config(paths.config, {**{k: v for k, v in saved.items() if k != "select"},
                                       **config_to_dict({"select": sel})}, command)
        write_json_atomic(folder / "report.json", full_report)
        write_report_html(scores, selection, full_report, folder / "report.html")
        write_text_atomic(folder / "README.md", card)
    logger.info("selected %d examples with %s (kept in %s)", report["n_selected"], report["method"], kept)
    return report
