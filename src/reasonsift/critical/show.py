"""``reasonsift critical --run RUN --show N``: traces with their critical tokens highlighted.

Reads ``RUN/critical.jsonl`` and the resolved config next to it, tokenizes each shown example
exactly as the critical stage and ``train --objective cft`` do, and prints the response with the
masked tokens highlighted (bold red on a terminal, ``⟦…⟧`` when piped), then writes the same view
to ``RUN/critical/show.html``.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from reasonsift.config import load_config
from reasonsift.data.load import iter_examples, parse_field_overrides
from reasonsift.data.records import DataError
from reasonsift.data.render import tokenize_example
from reasonsift.models import load_tokenizer
from reasonsift.runfolder import RunPaths, write_text_atomic

ANSI_ON, ANSI_OFF = "\x1b[1;31m", "\x1b[0m"
PLAIN_ON, PLAIN_OFF = "⟦", "⟧"


def token_pieces(tokenizer: Any, ids: list[int]) -> list[str]:
    """The text each token adds to the decoded response (pieces join to the decoded text;
    special tokens show as nothing). Decoded cumulatively, so multi-byte characters split over
    byte-level tokens land on the token that completes them."""
    pieces, previous = [], ""
    for i in range(1, len(ids) + 1):
        text = tokenizer.decode(ids[:i], skip_special_tokens=True)
        if text.endswith("\ufffd"):  # an incomplete character: wait for the token that completes it
            pieces.append("")
            continue
        pieces.append(text[len(previous):])
        previous = text
    return pieces


def highlight(pieces: list[str], mask: list[int], on: str, off: str, escape: Any = str) -> str:
    """Join pieces, wrapping each run of masked tokens in ``on`` ... ``off``."""
    out, inside = [], False
    for piece, m in zip(pieces, mask):
        if m and not inside:
            out.append(on)
        elif not m and inside:
            out.append(off)
        inside = bool(m)
        out.append(escape(piece))
    if inside:
        out.append(off)
    return "".join(out)


def shown_examples(run: str | Path, n: int) -> list[dict[str, Any]]:
    """The first ``n`` examples of ``RUN/critical.jsonl``: id, prompt, token pieces and mask."""
    paths = RunPaths(Path(run))
    if not paths.critical.exists() or not paths.critical_config.exists():
        raise FileNotFoundError(f"{paths.critical} or {paths.critical_config} not found: run reasonsift critical "
                                f"DATA --model M --run {run} first")
    configs = load_config(["data", "model", "critical"], paths.critical_config)
    dc, mc = configs["data"], configs["model"]
    tokenizer = load_tokenizer(mc.model, mc.trust_remote_code)
    shown = []
    for raw, ex, reason in iter_examples(paths.critical, parse_field_overrides(dc.fields), dc.split, True, n):
        if ex is None:
            raise DataError(f"{paths.critical} row {raw.index}: {reason}")
        mask = raw.row["critical_mask"]
        ids = tokenize_example(tokenizer, ex, dc.system_prompt).response_ids
        if len(ids) != len(mask):
            raise DataError(f"{paths.critical} row {raw.index}: mask of {len(mask)} tokens, response of {len(ids)} "
                            f"with {mc.model}'s tokenizer")
        shown.append({"id": ex.id, "prompt": ex.prompt, "pieces": token_pieces(tokenizer, ids), "mask": mask})
    return shown


def show_html(examples: list[dict[str, Any]], title: str) -> str:
    """A standalone page: each example's prompt, then its response with critical tokens marked."""
    parts = [f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font:14px/1.5 sans-serif;max-width:60em;margin:2em auto}"
             "pre{white-space:pre-wrap;background:#f6f6f6;padding:.8em}mark{background:#ffb3b3}"
             ".q{color:#555}</style>", f"<h1>{html.escape(title)}</h1>",
             "<p>Highlighted: tokens marked critical in <code>critical_mask</code> (what "
             "<code>train --objective cft</code> trains on).</p>"]
    for ex in examples:
        k, t = sum(ex["mask"]), len(ex["mask"])
        parts.append(f"<h2>{html.escape(str(ex['id']))}: {k} of {t} tokens critical</h2>")
        parts.append(f"<pre class='q'>{html.escape(ex['prompt'])}</pre>")
        parts.append("<pre>" + highlight(ex["pieces"], ex["mask"], "<mark>", "</mark>", html.escape) + "</pre>")
    return "\n".join(parts) + "\n"


def show_critical(run: str | Path, n: int, color: bool = False) -> Path:
    """Print ``n`` examples with their critical tokens highlighted; write and return ``RUN/critical/show.html``."""
    if n < 1:
        raise ValueError(f"--show needs a number of examples ≥ 1, got {n}")
    paths = RunPaths(Path(run))
    examples = shown_examples(run, n)
    on, off = (ANSI_ON, ANSI_OFF) if color else (PLAIN_ON, PLAIN_OFF)
    for ex in examples:
        k, t = sum(ex["mask"]), len(ex["mask"])
        print(f"── {ex['id']}: {k} of {t} tokens critical ({100 * k / max(t, 1):.0f}%)")
        print(highlight(ex["pieces"], ex["mask"], on, off))
        print()
    out = paths.critical_dir / "show.html"
    write_text_atomic(out, show_html(examples, f"Critical tokens: {paths.critical}"))
    print(f"{len(examples)} examples -> {out}")
    return out
