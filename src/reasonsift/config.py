"""Stage configs: frozen dataclasses, filled from YAML, then from ``key=value`` overrides.

Every stage has one dataclass (``DataConfig``, ``ScoreConfig``, ``SelectConfig``, ...). A YAML file
holds one section per stage (``data:``, ``score:``, ``select:``, ``critical:``, ``train:``,
``evaluate:``), and a command-line override is ``section.key=value`` or, when only one section of
the command has that key, plain ``key=value``. Unknown keys are errors, never silently ignored: a
typo in a hyperparameter must not produce a run that quietly used the default.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import types
import typing
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml


class ConfigError(ValueError):
    """A config value or key is invalid; the message names the key."""


# Enumerations, declared once: the dataclass fields below, argparse ``choices`` and the modules
# that dispatch on them all read these.
AnswerKind = Literal["auto", "math", "choice", "text"]
ANSWER_KINDS: tuple[str, ...] = get_args(AnswerKind)
SelectMethod = Literal["temp", "random", "longest", "middle-perplexity", "difficulty", "full-loss", "s2l", "embedding"]
SELECT_METHODS: tuple[str, ...] = get_args(SelectMethod)
Responses = Literal["greedy", "dataset"]
RESPONSES: tuple[str, ...] = get_args(Responses)
Engine = Literal["hf", "vllm"]  # what generates: transformers' generate, or vLLM (the [vllm] extra)
ENGINES: tuple[str, ...] = get_args(Engine)
CriticalMethod = Literal["counterfactual", "numbers"]
CRITICAL_METHODS: tuple[str, ...] = get_args(CriticalMethod)
Backend = Literal["local", "ray"]
BACKENDS: tuple[str, ...] = get_args(Backend)
World = Literal["v1", "v2"]  # the synthetic worlds of reasonsift demo (docs/synth-world-v2.md)
WORLDS: tuple[str, ...] = get_args(World)


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """How input rows become records (see ``reasonsift.data.load``)."""

    fields: tuple[str, ...] = ()  # column overrides "prompt=question", beat schema detection
    system_prompt: str | None = None  # system message prepended before the user prompt
    skip_bad_rows: bool = False  # quarantine bad rows to RUN/rejected.jsonl instead of failing
    split: str = "train"  # split to read from a hub id or a DatasetDict folder
    limit: int | None = None  # read only the first N rows (smoke runs)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Which model to load and how (see ``reasonsift.models``)."""

    model: str = ""  # HF hub id or local folder of the causal LM (θ₀)
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"  # auto: fp32 on CPU, bf16 on GPU
    device: str = "auto"  # auto: cuda if available, else cpu
    trust_remote_code: bool = False  # run code shipped with the checkpoint; off unless asked
    allow_pickle: bool = False  # load .bin (pickle) weights when no safetensors exist
    attn_implementation: str = "auto"  # auto: sdpa (the packed path needs no extra install)


@dataclasses.dataclass(frozen=True)
class ScoreConfig:
    """TEMP scoring: early-token losses under seeded weight perturbations (temp-method.md §1.1-1.4)."""

    seed: int = 42  # seeds every perturbation; reruns are bit-identical
    short_tokens: int = 100  # the difficulty window N (first N response tokens)
    long_tokens: int = 1000  # the loss-vector window N; one pass at this N also yields short_tokens
    num_isotropic: int = 8  # nested Gaussian checkpoints
    isotropic_std_start: float = 2e-3  # per-coordinate std of the first Gaussian checkpoint
    isotropic_std_end: float = 8e-3  # cumulative per-coordinate std of the last one
    target_ratio_low: float = 2.0  # θ_rnd: dataset-mean loss ratio to θ₀ must lie in [low, high]
    target_ratio_high: float = 3.0  # ... and high; the checkpoint nearest the range is used when none is inside
    # The paper's stds were set for 7B models and miss the band on small ones, hence calibrate by default.
    noise: Literal["calibrate", "fixed"] = "calibrate"  # calibrate: scale the std schedule until θ_rnd's ratio is in the band; fixed: the stds as given
    calibration_examples: int = 64  # seeded sample of the pool the noise scale is searched on
    calibration_trials: int = 12  # most checkpoints tried by that search
    direction: Literal["auto", "model", "finetune", "isotropic"] = "auto"  # θ_f - θ₀: auto = model if given, else isotropic
    direction_model: str | None = None  # θ_f folder or hub id (direction=model)
    finetune_steps: int = 50  # direction=finetune: steps of a short SFT on a random sample
    finetune_examples: int = 256  # direction=finetune: size of that sample
    finetune_lr: float = 1e-4  # direction=finetune: AdamW learning rate
    num_directional: int = 8  # noisy steps along the fine-tuning direction
    min_radius: float = 1.0  # L2 distance from θ₀ of the first directional checkpoint
    final_radius: float = 10.0  # ... and of the last one
    directional_embeddings: bool = True  # TEMP's default perturbs embeddings along e too
    batch_tokens: int = 0  # tokens per forward (halved on OOM); 0 = auto: 16,384 on GPU, 2,048 on CPU
    max_batch_examples: int = 256  # cap on sequences per packed forward
    lm_head_chunk: int = 4096  # scored rows per LM-head chunk (bounds the [rows x vocab] logits)
    shard_size: int = 1024  # examples per work unit file; units are the resume granularity
    full_loss: bool = False  # also score whole responses at θ₀ (the full-loss baseline; costly)
    max_full_tokens: int = 32768  # cap for that full-response pass
    save_token_losses: bool = False  # keep per-token NLL lists in the unit files


@dataclasses.dataclass(frozen=True)
class SelectConfig:
    """Subset selection (temp-method.md §1.3, §1.5-1.7, §3.5)."""

    method: SelectMethod = "temp"  # TEMP, or a baseline to compare it with
    budget: int | None = None  # number of examples to select
    budget_tokens: int | None = None  # or: total response tokens to select
    seed: int = 42  # seeds k-means and every random draw
    examples_per_cluster: int = 4  # TEMP: K_s = max(1, n_s // examples_per_cluster)
    kmeans_iters: int = 20  # Lloyd iterations of each k-means run
    s2l_clusters: int = 100  # S2L: clusters per source
    embedding_batch_tokens: int = 8192  # embedding baseline: tokens per forward
    embedding_max_tokens: int = 16384  # embedding baseline: truncate prompt+response
    # Guard against the short-response trap (a few tokens with a high mean loss win TEMP's difficulty
    # filter). 0 = off (the paper's algorithm)
    min_response_tokens: int = 0  # rows with fewer response tokens are left out before any method runs; 0 = off


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """Evaluation: generation and answer checking on a benchmark."""

    samples: int = 1  # completions per item; pass@k is reported for k in 1, 2, 4, ... < samples and k = samples
    temperature: float = 0.0  # 0 = greedy (then samples must be 1)
    top_p: float = 1.0  # nucleus sampling (with temperature > 0)
    max_new_tokens: int = 1024  # cap on each completion
    batch_size: int = 16  # prompts per generate() call
    seed: int = 0  # seeds sampling (temperature > 0)
    limit: int | None = None  # evaluate only the first N items
    system_prompt: str | None = None  # must match the one used for training, if any
    answer_kind: AnswerKind = "auto"  # auto: judged from the gold answer's form
    engine: Engine = "hf"  # vllm: paged attention + continuous batching (pip install 'reasonsift[vllm]')


@dataclasses.dataclass(frozen=True)
class CriticalConfig:
    """Critical tokens by counterfactual substitution (CFT, token-objectives.md §1).

    A response token is critical when every substitute (the model's most probable other tokens at
    that position), continued greedily, ends in a wrong final answer. ``responses``: ``greedy`` tests
    the model's own verified-correct greedy solutions (CFT's D_correct); ``dataset`` the rows' own
    responses, kept when their final answer is right.
    """

    responses: Responses = "greedy"  # greedy: the model's checked solutions; dataset: the rows' own
    method: CriticalMethod = "counterfactual"  # numbers: tokens holding a digit (a near-free approximation)
    engine: Engine = "hf"  # generates greedy solutions and rollouts; vllm needs pip install 'reasonsift[vllm]'
    stop_at_answer: bool = True  # end a rollout at its first completed final answer (\boxed{}, ####, answer: line)
    alternatives: int = 2  # substitutes per position (CFT: the 2nd and 3rd most probable tokens)
    max_new_tokens: int = 1024  # cap on a greedy solution (responses=greedy)
    max_response_tokens: int = 2048  # longer responses are skipped and counted (cost grows as length²)
    rollout_extra_tokens: int = 64  # a rollout from position t may write (length - t) + this many tokens
    batch_size: int = 32  # sequences per generate() call
    answer_kind: AnswerKind = "auto"  # how final answers are extracted
    shard_size: int = 64  # examples per resumable unit


@dataclasses.dataclass(frozen=True)
class ScaleConfig:
    """Where a stage's work units run (docs/scaling.md); never changes a result, so a resume may change it.

    ``local``: this process, or every rank of a ``torchrun``/Slurm job (RANK/WORLD_SIZE split the
    units). ``ray``: a pool of Ray actors, each holding the model once, fed units by this process.
    """

    backend: Backend = "local"  # local: this process or its torchrun peers; ray: a pool of Ray actors
    ray_address: str | None = None  # None: RAY_ADDRESS or a new local Ray; "auto": the running cluster; HOST:PORT
    workers: int = 0  # Ray actors; 0 = one per GPU of the cluster (per CPU on a CPU-only one)


# UPFT's planning prompt, appended to the question of prefix examples (1KE-JI/UPFT scripts/train_sft.sh).
UPFT_INSTRUCTION = (" Please provide the initial step towards resolving the question. This step may serve "
                    "as a foundation but might not encompass the entire solution.")


Objective = Literal["sft", "cft", "dft", "prefix"]
OBJECTIVES: tuple[str, ...] = get_args(Objective)  # the one list: config, objectives.py and --objective


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Fine-tuning with a token-level objective (``reasonsift.training``).

    Defaults follow TEMP's SFT recipe (temp-method.md §3.3): lr 1e-5 cosine, 5% warmup, weight decay
    1e-4, AdamW betas (0.9, 0.95), 2 x 8 accumulation = 16 sequences per step. Objectives
    (token-objectives.md §2-3): sft = every response token; cft = critical tokens only (a 0/1 mask per
    response token); dft = NLL x stop-grad(p); prefix = UPFT as its official code does it (a seeded
    ``prefix_fraction`` of examples get ``prefix_instruction`` and a response cut to ``prefix_tokens``
    tokens + EOS; UPFT's code default length is 32, its mixing ratio has no default: 0.5 is ours).
    """

    objective: Objective = "sft"  # sft, cft (critical tokens), dft (NLL x p), prefix
    learning_rate: float = 1e-5  # peak AdamW learning rate
    num_train_epochs: float = 3.0  # passes over the data (fractions allowed)
    max_steps: int = -1  # > 0 overrides num_train_epochs
    per_device_train_batch_size: int = 2  # sequences per forward on each device
    gradient_accumulation_steps: int = 8  # forwards per optimizer step
    warmup_ratio: float = 0.05  # fraction of optimizer steps with linear warmup
    lr_scheduler_type: str = "cosine"  # any transformers scheduler name (linear, constant, ...)
    weight_decay: float = 1e-4  # AdamW weight decay
    adam_beta2: float = 0.95  # beta1 stays 0.9
    max_length: int = 8192  # prompt + response tokens; longer responses are cut (the prompt is kept)
    seed: int = 42  # data order, LoRA init and the UPFT prefix draw
    lora: bool = False  # train a LoRA adapter, then merge it into the saved model
    lora_r: int = 16  # LoRA rank
    lora_alpha: int = 32  # LoRA scaling numerator (scale = alpha / r)
    lora_dropout: float = 0.05  # dropout on the LoRA branch
    lora_target_modules: str = "all-linear"  # or a comma-separated list of module names
    mask_column: str = "critical_mask"  # cft: per-row list of 0/1 over the response tokens (eos included)
    mask_file: str | None = None  # cft: .jsonl/.parquet with `id` + mask_column, joined by example id
    prefix_tokens: int = 32  # prefix: response tokens kept (then EOS); UPFT's default
    prefix_fraction: float = 0.5  # prefix: share of examples trained on the prefix only
    prefix_instruction: str = UPFT_INSTRUCTION  # prefix: appended to the prompt of prefix examples
    save_steps: int = 500  # checkpoint every N optimizer steps (the resume granularity)
    save_total_limit: int | None = 2  # keep the newest N checkpoints (each holds optimizer state)
    logging_steps: int = 10  # log the training loss every N optimizer steps
    bf16: str = "auto"  # auto: bf16 mixed precision on GPUs that support it, fp32 on CPU; or true/false
    gradient_checkpointing: bool = False  # recompute activations in backward: less memory, ~30% slower
    group_by_length: bool = False  # batches of similar lengths (less padding on mixed-length pools); seeded order
    resume: bool = True  # continue from OUT/checkpoint-* when present


CONFIG_SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "score": ScoreConfig,
    "select": SelectConfig,
    "critical": CriticalConfig,
    "train": TrainConfig,
    "evaluate": EvalConfig,
    "scale": ScaleConfig,
}


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert a YAML or command-line value to the annotated type, or raise ConfigError."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = get_args(tp)
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            if type(None) in args:
                return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{key}: cannot be {value!r}")
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(str, choices))}")
        return value
    if origin is tuple:
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (inner, *_rest) = get_args(tp)
        return tuple(_coerce(v, inner, key) for v in value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
            return int(value)  # exact: going through float would round seeds above 2**53
        try:
            as_float = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected an integer, got {value!r}") from None
        if not as_float.is_integer():
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return int(as_float)
    if tp is float:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected a number, got {value!r}") from None
    if tp is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return str(value)
    raise ConfigError(f"{key}: unsupported type {tp}")


def did_you_mean(unknown: list[str], names: set[str], section: str = "") -> str:
    """"; did you mean score.seed?" for the known key nearest each unknown one ("" when none is near)."""
    near = [m[0] for u in unknown if (m := difflib.get_close_matches(u, sorted(names), n=1, cutoff=0.6))]
    prefix = f"{section}." if section else ""
    return f"; did you mean {' or '.join(prefix + n for n in dict.fromkeys(near))}?" if near else ""


def make_config(cls: type, values: dict[str, Any], section: str = "") -> Any:
    """Build a frozen config from a dict, coercing types; unknown keys raise ConfigError."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        where = f"section '{section}'" if section else cls.__name__
        raise ConfigError(
            f"unknown key(s) {', '.join(unknown)} in {where}{did_you_mean(unknown, names, section)}; "
            f"known: {', '.join(sorted(names))}"
        )
    kwargs = {k: _coerce(v, hints[k], f"{section}.{k}" if section else k) for k, v in values.items()}
    return cls(**kwargs)


def _parse_override(value: str, cls: type, field: str, item: str) -> Any:
    """An override's text as YAML (numbers, lists, null), except for text fields.

    Text fields keep the characters typed: YAML would turn ``system_prompt=Answer: yes`` into a
    mapping, ``yes`` into True and ``model=010`` into 8.
    """
    tp = typing.get_type_hints(cls).get(field)
    if tp is str or (get_origin(tp) in (typing.Union, types.UnionType) and set(get_args(tp)) == {str, type(None)}):
        return value
    try:
        return yaml.safe_load(value) if value else value
    except yaml.YAMLError as e:
        raise ConfigError(f"override {item!r}: not a valid value ({' '.join(str(e).split())})") from None


def load_config(
    sections: list[str], yaml_path: str | Path | None = None, overrides: list[str] | None = None
) -> dict[str, Any]:
    """Resolve configs for the given sections: defaults < YAML file < ``key=value`` overrides.

    Returns ``{section: frozen dataclass}``. Sections present in the YAML but not used by this
    command are checked too (so a typo anywhere in the file is caught) but not returned.
    """
    raw: dict[str, dict[str, Any]] = {s: {} for s in sections}
    if yaml_path is not None:
        try:
            loaded = yaml.safe_load(Path(yaml_path).read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{yaml_path}: not valid YAML ({' '.join(str(e).split())})") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{yaml_path}: expected a mapping of sections")
        for name, values in loaded.items():
            if name not in CONFIG_SECTIONS:
                raise ConfigError(
                    f"{yaml_path}: unknown section '{name}'; known: {', '.join(CONFIG_SECTIONS)}"
                )
            if not isinstance(values, dict):
                raise ConfigError(f"{yaml_path}: section '{name}' must be a mapping")
            make_config(CONFIG_SECTIONS[name], values, name)  # validate even if unused
            if name in raw:
                raw[name].update(values)
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not key=value")
        key, value = item.split("=", 1)
        if "." in key:
            section, field = key.split(".", 1)
            if section not in raw:
                near = difflib.get_close_matches(section, sections, n=1)
                hint = f"; did you mean {near[0]}.{field}?" if near and section not in CONFIG_SECTIONS else ""
                raise ConfigError(f"override {item!r}: section '{section}' is not used here{hint} "
                                  f"(sections: {', '.join(sections)})")
            targets = [section]
        else:
            field = key
            targets = [s for s in sections if field in {f.name for f in dataclasses.fields(CONFIG_SECTIONS[s])}]
            if not targets:
                qualified = {f"{s}.{f.name}" for s in sections for f in dataclasses.fields(CONFIG_SECTIONS[s])}
                by_field = {q.split(".", 1)[1]: q for q in sorted(qualified, reverse=True)}
                near = difflib.get_close_matches(field, sorted(by_field), n=1)
                hint = f"; did you mean {by_field[near[0]]}?" if near else ""
                raise ConfigError(f"unknown key '{key}'{hint} (sections here: {', '.join(sections)}; "
                                  "`reasonsift config` lists every key)")
            if len(targets) > 1:
                raise ConfigError(f"key '{key}' is ambiguous; write one of "
                                  + ", ".join(f"{t}.{key}" for t in targets))
        raw[targets[0]][field] = _parse_override(value, CONFIG_SECTIONS[targets[0]], field, item)
    return {s: make_config(CONFIG_SECTIONS[s], raw[s], s) for s in sections}


def config_to_dict(configs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Plain-dict view of resolved configs (tuples become lists), for YAML and hashing."""
    out = {}
    for name, cfg in configs.items():
        out[name] = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}
    return out


def config_hash(payload: Any) -> str:
    """Stable short hash of anything JSON-serialisable (used to refuse stale resumes)."""
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
