"""The selection stage: ``reasonsift select RUN --budget B [--method temp]``.

Reads ``RUN/scores.parquet``, chooses a subset with the configured method, and writes:
- ``RUN/selected.jsonl``: the chosen input rows exactly as they were (a ``.jsonl`` line is copied
  byte for byte; other formats are written as canonical JSON of the unchanged row), in input order;
- ``RUN/scores.parquet`` with ``cluster`` and ``selected`` columns added;
- ``RUN/report.json`` with a ``selection`` section added to the scoring report; ``RUN/report.html`` for people;
- ``RUN/README.md``, a dataset card naming the source data, scorer, config, budget and seed.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from reasonsift.config import ConfigError, config_to_dict
from reasonsift.data.load import iter_rows
from reasonsift.runfolder import (RunPaths, read_json, save_config, write_atomic, write_json_atomic,
                                  write_text_atomic)
from reasonsift.selection.select import select
from reasonsift.selection.report import write_report_html

logger = logging.getLogger(__name__)


def _embeddings(paths: RunPaths, scoring: dict[str, Any], configs: dict[str, Any], progress: bool) -> Any:
    """Embed every scored example with θ₀ (only the embedding baseline needs this)."""
    from reasonsift.config import ModelConfig, make_config
    from reasonsift.models import load_model
    from reasonsift.scoring.scorer import Item
    from reasonsift.selection.embedding import embed_items

    sel = configs["select"]
    saved = yaml.safe_load(paths.config.read_text()) or {}
    model = load_model(scoring["model"], make_config(ModelConfig, saved.get("model", {}), "model"))
    items = []
    for shard in sorted((paths.score_dir / "tokens").glob("shard*.parquet")):
        t = pq.read_table(shard, columns=["prompt_ids", "response_ids"])
        for p, r in zip(t.column(0).to_pylist(), t.column(1).to_pylist()):
            items.append(Item(p[: sel.embedding_max_tokens], r[: max(1, sel.embedding_max_tokens - len(p))]))
    return embed_items(model, items, sel.embedding_batch_tokens, progress)


def write_selected(data: str, split: str, row_indices: set[int], out: Path) -> int:
    """Stream the input again and copy the chosen rows verbatim, in input order."""
    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            for raw in iter_rows(data, split):
                if raw.index in row_indices:
                    f.write(raw.raw + "\n")

    write_atomic(out, write)
    return len(row_indices)


def dataset_card(scoring: dict[str, Any], report: dict[str, Any], configs: dict[str, Any]) -> str:
    """A short dataset card for the curated subset (provenance a user can publish with it)."""
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
- **Tokens scored**: {scoring['tokens']['scored']:,} (full-trace scoring at the same checkpoints: {scoring['tokens']['full_trace_all_checkpoints']:,})
- **Command**: `{report.get('command', '')}`

| source | pool | selected |
|---|---|---|
{sources}

Rows in `selected.jsonl` are the input rows unchanged, in input order. Scores, clusters and the
selection flag per example are in `scores.parquet`; the full config is in `config.yaml`.
"""


def run_selection(run: str | Path, configs: dict[str, Any], command: str = "", progress: bool = True,
                  data: str | None = None) -> dict[str, Any]:
    """Select from a scored run folder; returns the selection report."""
    paths = RunPaths(Path(run))
    if not paths.scores.exists() or not paths.report.exists():
        raise ConfigError(f"{paths.root}: no scores.parquet/report.json; run `reasonsift score` first")
    sel = configs["select"]
    scoring = {k: v for k, v in read_json(paths.report).items() if k != "selection"}
    data = data or scoring["input"]
    table = pq.read_table(paths.scores)
    scores = table.drop([c for c in ("cluster", "selected") if c in table.column_names]).to_pandas()
    embeddings = _embeddings(paths, scoring, configs, progress) if sel.method == "embedding" else None
    selection = select(scores, sel, embeddings)
    report = {**selection.report, "command": command}
    saved = yaml.safe_load(paths.config.read_text()) if paths.config.exists() else {}
    saved = {k: v for k, v in (saved or {}).items() if k != "select"}
    saved.update(config_to_dict({"select": sel}))
    save_config(paths.config, saved, command)
    out = pa.Table.from_pandas(scores, preserve_index=False) \
        .append_column("cluster", pa.array(selection.cluster, pa.int32())) \
        .append_column("selected", pa.array(selection.selected, pa.bool_()))
    write_atomic(paths.scores, lambda p: pq.write_table(out, p))
    row_indices = set(scores.loc[selection.selected, "row_index"].astype(int))
    scoring_config = yaml.safe_load(paths.config.read_text()).get("data", {})
    write_selected(data, scoring_config.get("split", "train"), row_indices, paths.selected)
    write_json_atomic(paths.report, {**scoring, "selection": report})
    write_report_html(scores, selection, {**report, "tokens": scoring.get("tokens", {}),
                                          "theta_rnd": scoring.get("theta_rnd")}, paths.report_html)
    write_text_atomic(paths.dataset_card, dataset_card(scoring, report, configs))
    logger.info("selected %d examples with %s", report["n_selected"], report["method"])
    return report
