"""Config resolution: defaults < YAML < overrides, strict keys, type coercion, hashing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from reasonsift.config import (
    ConfigError,
    DataConfig,
    ModelConfig,
    ScoreConfig,
    SelectConfig,
    config_hash,
    config_to_dict,
    load_config,
    make_config,
)

ROOT = Path(__file__).resolve().parents[1]


def write_yaml(path: Path, payload: dict) -> Path:
    path.write_text(yaml.safe_dump(payload), encoding="utf-8")
    return path


def test_defaults():
    got = load_config(["data", "model", "score", "select"])
    assert got == {"data": DataConfig(), "model": ModelConfig(), "score": ScoreConfig(), "select": SelectConfig()}
    assert got["score"].seed == 42 and got["data"].split == "train" and got["select"].budget is None
    assert list(load_config(["select"])) == ["select"]


def test_yaml_then_overrides(tmp_path):
    cfg = write_yaml(tmp_path / "c.yaml", {"score": {"seed": 7, "short_tokens": 50},
                                           "select": {"method": "random", "budget": 10}})
    got = load_config(["score", "select"], cfg, ["score.seed=9", "budget=20"])
    assert (got["score"].seed, got["score"].short_tokens, got["score"].long_tokens) == (9, 50, 1000)
    assert (got["select"].method, got["select"].budget, got["select"].seed) == ("random", 20, 42)
    # The last override of a key wins.
    assert load_config(["score"], cfg, ["short_tokens=1", "short_tokens=2"])["score"].short_tokens == 2


def test_yaml_sections_not_used_are_checked_but_not_returned(tmp_path):
    cfg = write_yaml(tmp_path / "c.yaml", {"data": {"limit": 5}, "score": {"seed": 1}})
    assert load_config(["data"], cfg) == {"data": DataConfig(limit=5)}
    bad = write_yaml(tmp_path / "bad.yaml", {"data": {"limit": 5}, "score": {"sead": 1}})
    with pytest.raises(ConfigError, match="sead"):
        load_config(["data"], bad)


@pytest.mark.parametrize("payload,named", [
    ({"score": {"short_tokenz": 5}}, "short_tokenz"),
    ({"scoring": {"seed": 1}}, "scoring"),
    ({"score": [1, 2]}, "score"),
    ({"select": {"method": "best"}}, "select.method"),
])
def test_bad_yaml(tmp_path, payload, named):
    with pytest.raises(ConfigError, match=named):
        load_config(["score", "select"], write_yaml(tmp_path / "c.yaml", payload))


def test_malformed_yaml_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("score:\n  seed: [1, 2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="c.yaml"):
        load_config(["score"], path)


@pytest.mark.parametrize("override,named", [
    ("short_tokenz=5", "short_tokenz"),
    ("score.short_tokenz=5", "short_tokenz"),
    ("train.lr=1", "train"),
    ("seed", "seed"),
    ("score.seed=abc", "score.seed"),
    ("score.short_tokens=3.5", "score.short_tokens"),
    ("data.skip_bad_rows=maybe", "data.skip_bad_rows"),
    ("model.dtype=fp8", "model.dtype"),
    ("select.method=best", "select.method"),
    ("select.budget=[1,2", "budget"),
])
def test_bad_overrides_name_the_key(override, named):
    with pytest.raises(ConfigError) as err:
        load_config(["data", "model", "score", "select"], None, [override])
    assert named in str(err.value)


def test_ambiguous_plain_key():
    with pytest.raises(ConfigError, match="ambiguous") as err:
        load_config(["score", "select"], None, ["seed=1"])
    assert "score.seed" in str(err.value) and "select.seed" in str(err.value)
    # With one section holding the key, the plain form works.
    assert load_config(["data", "score"], None, ["seed=5"])["score"].seed == 5


@pytest.mark.parametrize("section,key,text,expected", [
    ("score", "short_tokens", "3", 3),
    ("select", "budget", "1e3", 1000),
    ("score", "seed", "12345678901234567891", 12345678901234567891),  # not rounded through float
    ("score", "isotropic_std_start", "2e-3", 0.002),
    ("score", "min_radius", "3", 3.0),
    ("data", "skip_bad_rows", "true", True),
    ("data", "skip_bad_rows", "off", False),
    ("select", "budget", "none", None),
    ("data", "limit", "null", None),
    ("data", "system_prompt", "", None),
    ("model", "dtype", "bfloat16", "bfloat16"),
    ("data", "fields", "prompt=q,response=a", ("prompt=q", "response=a")),
    ("data", "fields", "[a, b]", ("a", "b")),
    # Text fields keep exactly what was typed (YAML would make a mapping, True and 8 of these).
    ("data", "system_prompt", "Answer: yes", "Answer: yes"),
    ("data", "system_prompt", "yes", "yes"),
    ("model", "model", "010", "010"),
])
def test_override_coercion(section, key, text, expected):
    value = getattr(load_config([section], None, [f"{section}.{key}={text}"])[section], key)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize("key,value,expected", [
    ("short_tokens", "3", 3),
    ("isotropic_std_start", "2e-3", 0.002),
    ("full_loss", "true", True),
    ("direction_model", "none", None),
    ("direction", "isotropic", "isotropic"),
])
def test_make_config_coerces_strings(key, value, expected):
    assert getattr(make_config(ScoreConfig, {key: value}, "score"), key) == expected


def test_make_config_checks_literals_and_bools():
    with pytest.raises(ConfigError, match="score.direction"):
        make_config(ScoreConfig, {"direction": "sideways"}, "score")
    with pytest.raises(ConfigError, match="score.seed"):
        make_config(ScoreConfig, {"seed": True}, "score")
    with pytest.raises(ConfigError, match="bogus"):
        make_config(ScoreConfig, {"bogus": 1})


def test_config_hash_stable_and_sensitive(tmp_path):
    a = config_to_dict(load_config(["data", "score"], None, ["data.fields=prompt=q"]))
    b = config_to_dict(load_config(["data", "score"], None, ["data.fields=prompt=q"]))
    assert config_hash(a) == config_hash(b)
    assert config_hash(dict(reversed(list(a.items())))) == config_hash(a)  # key order does not matter
    assert a["data"]["fields"] == ["prompt=q"]  # tuples become lists for YAML/JSON
    changed = config_to_dict(load_config(["data", "score"], None, ["data.fields=prompt=q", "score.seed=43"]))
    assert config_hash(changed) != config_hash(a)
    assert config_hash({**a, "score": {**a["score"], "isotropic_std_end": 0.008000001}}) != config_hash(a)
    # Same hash in a fresh interpreter with another hash seed.
    code = "import json,sys; from reasonsift.config import config_hash; print(config_hash(json.loads(sys.argv[1])))"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PYTHONHASHSEED": "987"}
    out = subprocess.run([sys.executable, "-c", code, json.dumps(a)], env=env, capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == config_hash(a)


def test_resolved_config_round_trips_through_yaml(tmp_path):
    resolved = load_config(["data", "score", "select"], None,
                           ["fields=prompt=q,response=a", "system_prompt=Be: brief", "score.seed=3", "budget=9"])
    path = write_yaml(tmp_path / "resolved.yaml", config_to_dict(resolved))
    assert load_config(["data", "score", "select"], path) == resolved


def _repo_yamls() -> list[Path]:
    return sorted((ROOT / "configs").glob("**/*.y*ml")) if (ROOT / "configs").exists() else []


@pytest.mark.parametrize("path", _repo_yamls() or [None], ids=lambda p: p.name if p else "none")
def test_repo_configs_load(path):
    # The repository ships example configs: their absence is a broken checkout, never a skip.
    assert path is not None, f"no YAML files under {ROOT / 'configs'}"
    sections = list(yaml.safe_load(path.read_text()) or {})
    assert path.read_text().startswith("#"), "every config starts with a comment showing how to run it"
    configs = load_config(sections, path)
    assert set(configs) == set(sections)
