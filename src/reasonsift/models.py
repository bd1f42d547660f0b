"""Load causal LMs and tokenizers (local folder or hub id), and build tiny ones locally.

Real loading goes through ``from_pretrained`` with safetensors only (unless the user opts into
pickle weights) and ``trust_remote_code=False`` unless asked. The tiny builders exist because no
model hub is reachable here: tests, the synthetic world and the benchmarks build Llama-style models
from a config and tokenizers trained on local text, then save and reload them through the same
``from_pretrained`` path a user's 7B model takes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any

import torch

from reasonsift.config import ModelConfig, config_hash

logger = logging.getLogger(__name__)

# A minimal chat template for locally built tokenizers (role markers are single special tokens,
# so the prompt/response boundary never merges).
LOCAL_CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
# Files whose change means another model: weights, configs, tokenizer, chat template.
MODEL_FILE_SUFFIXES = {".json", ".safetensors", ".bin", ".pt", ".model", ".jinja", ".txt", ".tiktoken"}
LOCAL_SPECIAL_TOKENS = ["<pad>", "</s>", "<unk>", "<|system|>", "<|user|>", "<|assistant|>"]


class ModelLoadError(RuntimeError):
    """A model or tokenizer could not be loaded; the message says what to do."""


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` means this process's CUDA device when there is one, else the CPU.

    Under ``torchrun`` (``LOCAL_RANK`` set) each process takes GPU ``LOCAL_RANK``: a bare "cuda" would
    put every rank of a node on GPU 0.
    """
    if device == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        local_rank = os.environ.get("LOCAL_RANK")
        if local_rank is None:
            return torch.device("cuda")
        return torch.device("cuda", int(local_rank) % torch.cuda.device_count())
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """``auto`` means fp32 on CPU (bf16 is slow without AVX512-BF16) and bf16 on GPU."""
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]


def _check_weights(name: str, allow_pickle: bool) -> None:
    """Fail early and clearly on a local folder without (safe) weights."""
    path = Path(name)
    if not path.is_dir():
        return
    if not (path / "config.json").exists():
        raise ModelLoadError(f"{path}: no config.json; not a Hugging Face model folder")
    safe = list(path.glob("*.safetensors"))
    pickled = list(path.glob("*.bin")) + list(path.glob("*.pt"))
    if not safe and not pickled:
        raise ModelLoadError(f"{path}: no weights (*.safetensors) in this checkpoint folder")
    if not safe and not allow_pickle:
        raise ModelLoadError(f"{path}: only pickle weights (*.bin); convert to safetensors or pass "
                             "model.allow_pickle=true if you trust this file")


def looks_like_path(name: str) -> bool:
    """True for what a user means as a local folder: ./x, ../x, /x, ~/x, a/b/c, x\\y, or a trailing slash.

    A hub id is ``name`` or ``org/name``; anything else cannot be one, so it is never sent to the hub.
    """
    return (name.startswith((".", "/", "~")) or name.endswith(("/", "\\")) or "\\" in name
            or name.count("/") > 1 or name.strip() != name)


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) asks for the local cache only."""
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


_CHECKED: set[str] = set()


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def check_model_source(name: str, tokenizer: bool = False) -> None:
    """Fail in one clear line, before any slow call, when ``name`` cannot be a model (or its tokenizer).

    - a path-like name that does not exist: "no such folder" (not a hub-id syntax error);
    - a file, an empty folder, or (``tokenizer``) a folder without tokenizer files: say which (a
      folder without config.json or weights is ``load_model``'s check);
    - a hub id: log that it is fetched from the hub; with ``HF_HUB_OFFLINE`` set, only the cache is
      read (and a model missing from it is an error at once); otherwise one short request checks
      that the hub is reachable and has the model, instead of transformers retrying for about a
      minute without a network.
    """
    if not name:
        raise ModelLoadError("no model given: pass --model PATH_OR_HUB_ID")
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelLoadError(f"{name}: is a file; --model wants a model folder (config.json, tokenizer, "
                                 "*.safetensors) or a hub id")
        if not any(path.iterdir()):
            raise ModelLoadError(f"{name}: empty folder; a model folder holds config.json, the tokenizer files "
                                 "and *.safetensors weights (save_pretrained writes them)")
        if tokenizer and not any((path / f).exists() for f in TOKENIZER_FILES):
            raise ModelLoadError(f"{path}: no tokenizer files ({', '.join(TOKENIZER_FILES)}); save the "
                                 "tokenizer into the model folder too (tokenizer.save_pretrained)")
        return
    if looks_like_path(name):
        raise ModelLoadError(f"{name}: no such folder")
    if name in _CHECKED:
        return
    from huggingface_hub import try_to_load_from_cache

    cached = isinstance(try_to_load_from_cache(name, "config.json"), str)
    if hub_offline():
        if not cached:
            raise ModelLoadError(f"{name}: not a local folder, and HF_HUB_OFFLINE is set so the hub is not asked; "
                                 "it is not in the local Hugging Face cache either")
        logger.info("%s: not a local folder; loading it from the Hugging Face cache (HF_HUB_OFFLINE is set)", name)
    elif not cached:
        from huggingface_hub import HfApi, constants
        from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

        logger.info("%s: not a local folder; fetching it from %s (set HF_HUB_OFFLINE=1 to use only the cache)",
                    name, constants.ENDPOINT)
        try:
            HfApi().model_info(name, timeout=10)
        except GatedRepoError:
            raise ModelLoadError(f"{name}: a gated model on the hub; accept its licence and log in "
                                 "(huggingface-cli login)") from None
        except RepositoryNotFoundError:
            raise ModelLoadError(f"{name}: no such folder here, and no such model on the hub (or it is private: "
                                 "huggingface-cli login)") from None
        except Exception as e:  # noqa: BLE001 - httpx/requests connection errors differ by version
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ModelLoadError(f"{name}: no such local folder, and the hub ({constants.ENDPOINT}) could not be "
                                 f"reached ({msg}); pass a local model folder, or set HF_HUB_OFFLINE=1 to use the "
                                 "local cache") from None
    _CHECKED.add(name)


# Config attributes that hold a model's maximum sequence length, by model family.
POSITION_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length", "n_ctx")


def check_model_files(name: str, cfg: ModelConfig | None = None, tokenizer: bool = True) -> None:
    """Raise ModelLoadError when a local model folder cannot be loaded, before anything is written.

    Stages call it while validating their inputs, so a folder without weights or without a
    tokenizer stops the command before a run folder exists. Hub ids are checked when loaded.
    """
    cfg = cfg or ModelConfig(model=name)
    check_model_source(name)  # a missing folder, a file, an empty folder, an unreachable hub id
    _check_weights(name, cfg.allow_pickle)  # before the tokenizer: a folder without weights is the likelier mistake
    if tokenizer:
        check_model_source(name, tokenizer=True)


def max_positions(name: str, trust_remote_code: bool = False) -> int | None:
    """The longest sequence (prompt + response tokens) the model supports, from its config; None if unknown."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(name, trust_remote_code=trust_remote_code)
    except Exception:  # noqa: BLE001 - an adapter folder or an odd config: the loaders report real problems
        return None
    return config_positions(config)


def config_positions(config: Any) -> int | None:
    """``max_positions`` from an already loaded model config."""
    config = getattr(config, "text_config", None) or config  # multimodal configs nest the LM's
    for key in POSITION_KEYS:
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def load_tokenizer(name: str, trust_remote_code: bool = False) -> Any:
    """Load a tokenizer; give it a pad token (eos) when it has none, for batching."""
    from transformers import AutoTokenizer

    check_model_source(name, tokenizer=True)
    try:
        tok = AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code)
    except Exception as e:  # noqa: BLE001 - hub/IO errors vary; report them in one line
        raise ModelLoadError(f"{name}: could not load the tokenizer ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    if tok.pad_token is None and tok.eos_token is not None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(name: str, cfg: ModelConfig | None = None, device: torch.device | None = None) -> Any:
    """Load a causal LM in eval mode on ``device`` with the configured dtype."""
    from transformers import AutoModelForCausalLM

    cfg = cfg or ModelConfig(model=name)
    device = device or resolve_device(cfg.device)
    check_model_source(name)
    _check_weights(name, cfg.allow_pickle)
    attn = "sdpa" if cfg.attn_implementation == "auto" else cfg.attn_implementation
    try:
        model = AutoModelForCausalLM.from_pretrained(
            name, dtype=resolve_dtype(cfg.dtype, device), trust_remote_code=cfg.trust_remote_code,
            use_safetensors=None if cfg.allow_pickle else True, attn_implementation=attn,
        )
    except Exception as e:  # noqa: BLE001
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelLoadError(f"{name}: could not load the model ({msg})") from None
    return model.to(device).eval()


def adapter_base(path: Path) -> str:
    """The base model a LoRA adapter folder names in ``adapter_config.json``."""
    base = json.loads((path / "adapter_config.json").read_text(encoding="utf-8")).get("base_model_name_or_path")
    if not base:
        raise ModelLoadError(f"{path}: adapter_config.json names no base_model_name_or_path")
    return str(base)


def is_adapter_folder(model_path: str) -> bool:
    """A LoRA adapter alone (a Trainer ``checkpoint-N`` of a ``--lora`` run): no full model config."""
    path = Path(model_path)
    return path.is_dir() and (path / "adapter_config.json").exists() and not (path / "config.json").exists()


def model_fingerprint(model_path: str) -> str:
    """A short hash of what the model is: file names, sizes and mtimes of a local folder (a retrain
    into the same folder changes it), the base model's fingerprint too for an adapter, or the hub id."""
    path = Path(model_path)
    if not path.is_dir():
        return f"hub:{model_path}"
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in MODEL_FILE_SUFFIXES)
    stats: list[Any] = [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files]
    if is_adapter_folder(model_path):
        stats.append(["base", model_fingerprint(adapter_base(path))])
    return config_hash(stats)


def load_model_and_tokenizer(model_path: str, mc: ModelConfig) -> tuple[Any, Any]:
    """Model and tokenizer (evaluation, critical); a LoRA adapter folder is loaded onto its base and merged.

    Trainer ``checkpoint-N`` folders of a ``--lora`` run hold only an adapter, which the plain
    loader rejects ("no config.json"). Without peft, the error names the merged model folder.
    """
    if not is_adapter_folder(model_path):
        model = load_model(model_path, mc)  # first: a folder without weights is the likelier mistake
        return model, load_tokenizer(model_path, mc.trust_remote_code)
    path = Path(model_path)
    base = adapter_base(path)
    try:
        from peft import PeftModel
    except ImportError:
        merged = path.parent if (path.parent / "config.json").exists() else None
        hint = (f"evaluate the merged model in {merged}" if merged else
                "evaluate the merged model that reasonsift train --lora writes to its OUT folder")
        raise ModelLoadError(f"{path} holds only a LoRA adapter (base {base}); install peft to evaluate it on "
                             f"its base, or {hint}") from None
    base_model = load_model(base, dataclasses.replace(mc, model=base))
    device = next(base_model.parameters()).device
    try:
        # Merged: plain weights generate as fast as the base, and nothing else needs peft afterwards.
        model = PeftModel.from_pretrained(base_model, str(path)).merge_and_unload()
    except Exception as e:  # noqa: BLE001 - peft/IO errors vary; report them in one line
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelLoadError(f"{path}: could not apply the LoRA adapter to {base} ({msg})") from None
    has_tokenizer = any((path / f).exists() for f in ("tokenizer.json", "tokenizer_config.json"))
    tokenizer = load_tokenizer(str(path) if has_tokenizer else base, mc.trust_remote_code)
    return model.to(device).eval(), tokenizer


def build_tiny_llama(vocab_size: int, hidden_size: int = 64, num_layers: int = 2, num_heads: int = 4,
                     intermediate_size: int | None = None, max_position_embeddings: int = 2048,
                     tie_word_embeddings: bool = False, seed: int = 0) -> Any:
    """A small random-init Llama-style causal LM (tests, the synthetic world, CPU benchmarks)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=num_layers,
        num_attention_heads=num_heads, num_key_value_heads=num_heads,
        intermediate_size=intermediate_size or 4 * hidden_size,
        max_position_embeddings=max_position_embeddings, tie_word_embeddings=tie_word_embeddings,
        bos_token_id=None, eos_token_id=1, pad_token_id=0, attn_implementation="sdpa",
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).eval()


def wrap_tokenizer(tokenizer_object: Any) -> Any:
    """A ``tokenizers.Tokenizer`` as a transformers tokenizer with the local chat template and special tokens.

    ``clean_up_tokenization_spaces`` is off: it would rewrite " ." as "." and break exact round trips.
    """
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(tokenizer_object=tokenizer_object, pad_token="<pad>", eos_token="</s>",
                                  unk_token="<unk>", clean_up_tokenization_spaces=False)
    tok.chat_template = LOCAL_CHAT_TEMPLATE
    return tok


def train_bpe_tokenizer(texts: list[str], vocab_size: int = 512) -> Any:
    """Train a byte-level BPE tokenizer on local text, with a chat template and eos/pad tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tk = Tokenizer(models.BPE(unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=LOCAL_SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tk.train_from_iterator(texts, trainer=trainer)
    return wrap_tokenizer(tk)


def char_tokenizer(charset: str) -> Any:
    """A character-level tokenizer over ``charset`` (the synthetic world's small alphabet)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    vocab = {t: i for i, t in enumerate(LOCAL_SPECIAL_TOKENS)}
    for ch in charset:
        vocab.setdefault(ch, len(vocab))
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tk.decoder = decoders.Fuse()
    tk.add_special_tokens(LOCAL_SPECIAL_TOKENS)  # matched whole, before the per-character split
    return wrap_tokenizer(tk)
