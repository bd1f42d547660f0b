"""A tokenizer that cannot see much of the data: score warns with the share and an example, console and report."""

from __future__ import annotations

import json
import logging

from reasonsift.cli import main
from tests.conftest import gsm8k_lines


def test_unknown_token_share_is_warned_and_recorded(tmp_path, capsys, caplog):
    from reasonsift.models import build_tiny_llama, char_tokenizer

    # lower-case letters, digits and space only: capitals, punctuation and "$" become <unk>
    tok = char_tokenizer("abcdefghijklmnopqrstuvwxyz0123456789 \n")
    model_dir = tmp_path / "model"
    build_tiny_llama(len(tok), hidden_size=32, num_layers=1, num_heads=2).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    data = tmp_path / "pool.jsonl"
    data.write_text("".join(gsm8k_lines(12)), encoding="utf-8")
    run = tmp_path / "run"
    with caplog.at_level(logging.WARNING, logger="reasonsift"):
        assert main(["score", str(data), "--model", str(model_dir), "--run", str(run), "--quiet",
                     "score.direction=isotropic", "score.num_isotropic=2", "score.short_tokens=8",
                     "score.long_tokens=16"]) == 0
    report = json.loads((run / "report.json").read_text())
    unk = report["unknown_tokens"]
    assert unk["token"] == "<unk>" and 0.01 < unk["share"] < 1 and unk["count"] > 0
    assert unk["share"] == round(unk["count"] / unk["response_tokens"], 4)
    assert unk["example"]["text"] and unk["example"]["text"] in unk["example"]["context"]
    warned = [r.getMessage() for r in caplog.records if "unknown token" in r.getMessage()]
    assert len(warned) == 1 and f"{100 * unk['count'] / unk['response_tokens']:.1f}%" in warned[0]
    assert repr(unk["example"]["text"]) in warned[0]
    assert warned[0] in report["notes"]  # every console warning is in the report's notes
    printed = capsys.readouterr().out
    assert "fewer than full traces at the same 3 checkpoints" in printed
    assert "one full pass over the pool at θ₀" in printed and "saved" not in printed


def test_a_tokenizer_that_covers_the_data_records_no_warning(tmp_path, tiny_model_dir, gsm8k_sample):
    """Byte-level BPE has no unknown token: nothing is recorded and no note is added."""
    run = tmp_path / "run"
    assert main(["score", str(gsm8k_sample), "--model", str(tiny_model_dir), "--run", str(run), "--quiet",
                 "score.direction=isotropic", "score.num_isotropic=2", "score.short_tokens=8",
                 "score.long_tokens=16", "data.limit=8"]) == 0
    report = json.loads((run / "report.json").read_text())
    assert "unknown_tokens" not in report or report["unknown_tokens"]["count"] == 0
    assert not any("unknown token" in n for n in report["notes"])
