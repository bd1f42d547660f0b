"""Model loading: device resolution per torchrun rank, and one-line errors for a wrong --model."""

from __future__ import annotations

import pytest
import torch

from reasonsift.models import resolve_device


def test_auto_device_follows_local_rank(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert resolve_device("auto") == torch.device("cuda", 3)
    monkeypatch.delenv("LOCAL_RANK")
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cpu") == torch.device("cpu")  # an explicit device is taken as given


def test_auto_device_without_cuda_is_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert resolve_device("auto") == torch.device("cpu")


def test_path_like_model_that_does_not_exist_is_no_such_folder(tmp_path, monkeypatch):
    from reasonsift.models import ModelLoadError, check_model_source

    monkeypatch.chdir(tmp_path)
    for name in ("./no-such-folder", "../nope", str(tmp_path / "missing"), "a/b/c"):
        with pytest.raises(ModelLoadError, match="no such folder$"):
            check_model_source(name)


def test_empty_folder_file_and_folder_without_tokenizer(tmp_path):
    from reasonsift.models import ModelLoadError, check_model_source, load_tokenizer

    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="empty folder; a model folder holds config.json"):
        load_tokenizer(str(tmp_path / "empty"))
    (tmp_path / "weights.safetensors").write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="is a file"):
        check_model_source(str(tmp_path / "weights.safetensors"))
    no_tok = tmp_path / "no_tok"
    no_tok.mkdir()
    (no_tok / "config.json").write_text("{}")
    with pytest.raises(ModelLoadError, match="no tokenizer files"):
        load_tokenizer(str(no_tok))


def test_hub_id_under_hf_hub_offline_fails_at_once(tmp_path, monkeypatch):
    """HF_HUB_OFFLINE is honoured: the hub is not asked, and the message says why the model is missing."""
    from reasonsift.models import ModelLoadError, check_model_source

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ModelLoadError, match="HF_HUB_OFFLINE is set so the hub is not asked; it is not in the "
                                             "local Hugging Face cache"):
        check_model_source("some-org/some-model-reasonsift-test")


def test_cli_reports_a_missing_model_folder(tmp_path, capsys):
    from reasonsift.cli import main

    data = tmp_path / "d.jsonl"
    data.write_text('{"prompt": "1+1?", "response": "2"}\n')
    assert main(["score", str(data), "--model", "./no-such-folder", "--run", str(tmp_path / "run"), "--quiet"]) == 2
    assert "reasonsift score: error: ./no-such-folder: no such folder" in capsys.readouterr().err
