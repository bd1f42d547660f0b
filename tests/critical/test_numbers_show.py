"""critical.method=numbers (digit tokens, no rollouts) and ``reasonsift critical --show N``."""

from __future__ import annotations

import json

from reasonsift.cli import main
from reasonsift.synth.generate import generate_pool, write_jsonl
from reasonsift.synth.world import build_base_model


def test_numbers_mask_marks_digit_tokens_without_a_model(tmp_path, capsys, monkeypatch):
    path = build_base_model(progress=False)
    rows = [r for r in generate_pool(100, seed=5, low_quality_fraction=0.0) if r["true_difficulty"] == 1][:3]
    data = write_jsonl(rows, tmp_path / "pool.jsonl")
    import reasonsift.critical.run_critical as rc

    monkeypatch.setattr(rc, "load_generator", lambda *a, **k: (_ for _ in ()).throw(AssertionError("model loaded")))
    run = tmp_path / "run"
    assert main(["critical", str(data), "--model", str(path), "--run", str(run), "--responses", "dataset",
                 "--method", "numbers", "--quiet", "answer_kind=text"]) == 0
    report = json.loads((run / "critical" / "report.json").read_text())
    assert report["method"] == "numbers" and report["rollouts"] == 0 and report["counts"]["kept"] == 3
    out = [json.loads(line) for line in (run / "critical.jsonl").read_text().splitlines()]
    for row in out:
        text = row["response"]  # char tokenizer: token i is character i, then EOS
        assert row["critical_mask"] == [int(ch.isdigit()) for ch in text] + [1]
    assert "APPROXIMATION" in (run / "critical" / "README.md").read_text()
    capsys.readouterr()
    # --show without DATA: the finished run, highlighted (piped: ⟦…⟧) and as HTML.
    assert main(["critical", "--run", str(run), "--show", "2"]) == 0
    shown = capsys.readouterr().out
    first = out[0]["response"]
    marked = "".join(f"⟦{ch}⟧" if ch.isdigit() else ch for ch in first).replace("⟧⟦", "")
    assert marked in shown and f"{out[0]['critical_tokens']} of {out[0]['response_tokens']} tokens critical" in shown
    assert out[2]["id"] not in shown  # only 2 shown
    page = (run / "critical" / "show.html").read_text()
    assert page.count("<h2>") == 2 and "<mark>" in page
    assert main(["critical", "--run", str(tmp_path / "nothing"), "--show", "1"]) == 2
    assert "run reasonsift critical" in capsys.readouterr().err
