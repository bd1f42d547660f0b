"""The CLI surface a newcomer meets first: usage lines, `reasonsift config`, did-you-mean, model errors."""

from __future__ import annotations

import dataclasses

import pytest

from reasonsift.cli import main
from reasonsift.config import CONFIG_SECTIONS
from reasonsift.config_help import field_comments, format_config_help


def help_text(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as e:
        main([*argv, "--help"])
    assert e.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("command,usage", [
    ("score", "reasonsift score DATA --model MODEL --run RUN"),
    ("curate", "reasonsift curate DATA --model MODEL --run RUN (--budget N | --budget-tokens T)"),
    ("critical", "reasonsift critical DATA --model MODEL --run RUN"),
    ("train", "reasonsift train DATA --model MODEL --out DIR"),
    ("select", "reasonsift select RUN (--budget N | --budget-tokens T)"),
    ("evaluate", "reasonsift evaluate --model MODEL --benchmark FILE"),
])
def test_usage_lines_name_the_required_arguments(capsys, command, usage):
    text = help_text(capsys, command)
    assert text.startswith(f"usage: {usage}") and "[args ...]" not in text
    if command != "select":
        assert "required" in text.split("--model MODEL", 2)[-1].split("\n  --", 1)[0]  # --model's help says so


def test_top_level_help_lists_the_commands_without_rst_markup(capsys):
    text = help_text(capsys)
    assert "``" not in text and "reasonsift config [SECTION]" in text
    assert "reasonsift select RUN" in text and "reasonsift score DATA --model MODEL" in text


def test_every_config_key_has_a_meaning():
    """The help is generated from the dataclasses: a field added without a comment fails here."""
    for name, cls in CONFIG_SECTIONS.items():
        missing = [k for k, v in field_comments(cls).items() if not v]
        assert not missing, f"{name}: fields without a # comment: {missing}"


def test_config_command_prints_every_key_default_and_meaning(capsys):
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    assert out == format_config_help()
    for name, cls in CONFIG_SECTIONS.items():
        for f in dataclasses.fields(cls):
            assert f"  {name}.{f.name} = " in out
    assert "  score.seed = 42    (int)\n      seeds every perturbation" in out
    assert "select.method = temp    (one of temp|random|" in out
    assert main(["config", "select"]) == 0
    one = capsys.readouterr().out
    assert "select.budget = null" in one and "score.seed" not in one


def test_config_command_suggests_a_section(capsys):
    assert main(["config", "scor"]) == 2
    assert "unknown config section 'scor'; did you mean score?" in capsys.readouterr().err


@pytest.mark.parametrize("override,hint", [
    ("score.seeed=1", "did you mean score.seed?"),
    ("short_tokenz=5", "did you mean score.short_tokens?"),
    ("scor.seed=1", "did you mean score.seed?"),
])
def test_unknown_key_suggests_the_near_one(capsys, tmp_path, override, hint):
    run = tmp_path / "run"
    assert main(["score", str(tmp_path / "data.jsonl"), "--model", "m", "--run", str(run), override]) == 2
    assert hint in capsys.readouterr().err
    assert not run.exists()  # config errors come before anything is created


def test_select_unknown_key(capsys, tmp_path):
    assert main(["select", str(tmp_path), "--budget", "3", "budgt=4"]) == 2
    assert "unknown key 'budgt'; did you mean select.budget?" in capsys.readouterr().err
