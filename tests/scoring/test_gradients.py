"""``reasonsift check-gradients``: per-example gradient projections on e, checked against finite differences."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from reasonsift.cli import main
from reasonsift.config import ConfigError
from reasonsift.scoring.gradients import check_gradients, spearman_ci
from tests.conftest import gsm8k_lines

SMALL = ["score.noise=fixed", "score.num_isotropic=2", "score.num_directional=3", "score.short_tokens=16", "score.long_tokens=48",
         "score.isotropic_std_start=0.02", "score.isotropic_std_end=0.2"]


def _loss64(model, prompt_ids, response_ids) -> float:
    """Mean response NLL in float64: the finite-difference oracle, independent of reasonsift.loss."""
    ids = torch.tensor([prompt_ids + response_ids])
    logits = model(input_ids=ids).logits[0, len(prompt_ids) - 1: -1].double()  # (n_response, V)
    return float(F.cross_entropy(logits, torch.tensor(response_ids)))


@pytest.fixture()
def pool(tmp_path):
    path = tmp_path / "pool.jsonl"
    path.write_text("".join(gsm8k_lines(20)), encoding="utf-8")
    return path


@pytest.fixture()
def scored_run(pool, tiny_model_dir, tiny_direction_dir, tmp_path):
    run = tmp_path / "run"
    assert main(["score", str(pool), "--model", str(tiny_model_dir), "--direction-model",
                 str(tiny_direction_dir), "--run", str(run), "--quiet", *SMALL]) == 0
    return run


def test_projection_is_the_directional_derivative(scored_run, tiny_model_dir, tiny_direction_dir):
    report = check_gradients(scored_run, pairs=6, seed=3, n_boot=200, progress=False)
    saved = json.loads((scored_run / "gradient_check.json").read_text())
    assert saved["pairs"] == report["pairs"] == 6 and len(saved["examples"]) == 12
    assert len({e["row_index"] for e in saved["examples"]}) == 12  # disjoint pairs
    # The backward pass differentiates exactly the loss that scoring stored at θ₀.
    assert report["max_abs_loss_mismatch"] < 1e-4
    for name in ("loss_vector_linf", "loss_vector_l2", "base_loss_diff"):
        s = report["spearman"][name]
        assert -1 <= s["rho"] <= 1 and s["n"] == 6 and s["ci95"][0] <= s["ci95"][1]

    # Oracle: central finite difference of the float64 loss along e = (θ_f − θ₀)/‖θ_f − θ₀‖.
    from transformers import AutoModelForCausalLM
    import pyarrow.parquet as pq

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).double().eval()
    target = dict(AutoModelForCausalLM.from_pretrained(tiny_direction_dir).double().named_parameters())
    theta0 = {n: p.detach().clone() for n, p in base.named_parameters()}
    delta = {n: target[n].detach() - theta0[n] for n in theta0}
    norm = float(torch.sqrt(sum((d ** 2).sum() for d in delta.values())))
    assert report["theta_f_distance"] == pytest.approx(norm, rel=1e-5)
    tokens = pq.read_table(scored_run / "score" / "tokens" / "shard00000.parquet").to_pandas()
    h = 1e-3
    for ex in saved["examples"][:3]:
        row = tokens[tokens["row_index"] == ex["row_index"]].iloc[0]
        prompt, response = [int(t) for t in row["prompt_ids"]], [int(t) for t in row["response_ids"]][:48]
        losses = []
        with torch.no_grad():
            for sign in (1, -1):
                for n, p in base.named_parameters():
                    p.copy_(theta0[n] + sign * h * delta[n] / norm)
                losses.append(_loss64(base, prompt, response))
        fd = (losses[0] - losses[1]) / (2 * h)
        assert ex["projection"] == pytest.approx(fd, rel=2e-3, abs=1e-5)


def test_cli_and_refusals(scored_run, pool, tiny_model_dir, tmp_path, capsys):
    assert main(["check-gradients", str(scored_run), "--pairs", "4", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "4 pairs" in out and "Spearman" in out
    assert json.loads((scored_run / "gradient_check.json").read_text())["pairs"] == 4
    iso = tmp_path / "iso"  # no θ_f: the theorem has no direction to test
    assert main(["score", str(pool), "--model", str(tiny_model_dir), "--run", str(iso), "--quiet",
                 "score.direction=isotropic", *SMALL]) == 0
    with pytest.raises(ConfigError, match="fine-tuning direction"):
        check_gradients(iso, pairs=4, progress=False)
    assert main(["check-gradients", str(tmp_path / "nothing"), "--pairs", "4"]) == 2


def test_spearman_ci_brackets_a_known_correlation():
    rng = np.random.default_rng(0)
    x = rng.normal(size=400)
    strong = spearman_ci(x, x + 0.3 * rng.normal(size=400), n_boot=300)
    none = spearman_ci(x, rng.normal(size=400), n_boot=300)
    assert strong["ci95"][0] > 0.8 and strong["ci95"][0] <= strong["rho"] <= strong["ci95"][1]
    assert none["ci95"][0] < 0 < none["ci95"][1]
