"""The critical stage: ``reasonsift critical DATA --model M --run RUN``.

Top to bottom: read the rows (questions with a gold final answer), take a verified-correct response
per row (``critical.responses=greedy``: the model's own greedy solution, as CFT does; ``dataset``:
the row's response, when its own final answer is right), find its critical tokens by counterfactual
substitution (``critical.counterfactual``), and write every kept example with its mask::

    RUN/critical.jsonl            one row per kept example, with ``critical_mask`` (0/1 per response
                                  token, EOS included, as ``train --objective cft`` reads it)
    RUN/critical/shard<s>.jsonl   the same rows per unit of ``shard_size`` input rows (+ .done)
    RUN/critical/manifest.json    input, model and config fingerprints (refuses a changed resume)
    RUN/critical/config.yaml      resolved config + command
    RUN/critical/report.json      counts, critical share, rollouts and decoded tokens, wall time
    RUN/critical/rejected.jsonl   rows skipped under --skip-bad-rows, with their reasons
    RUN/critical/README.md        dataset card of critical.jsonl

Rows written for ``dataset`` are the input rows verbatim plus ``critical_mask`` and
``critical_tokens``; rows written for ``greedy`` carry the model's solution as ``response`` (with
``id``, ``prompt``, ``answer``, ``source``, ``domain``; a row with a system turn is written as chat
``messages``). Either way ``train`` renders them exactly as this stage tokenized them, and refuses a
mask whose length does not match. Shards are the resume unit and, under ``torchrun``, the unit of
work per rank.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from reasonsift.config import ConfigError, EvalConfig, ScaleConfig, config_to_dict
from reasonsift.critical.counterfactual import CriticalStats, answer_end_tokens, find_critical
from reasonsift.critical.numbers import digit_tokens, numbers_mask
from reasonsift.data.formats import canonical_json, check_source, rejected_entry, source_id
from reasonsift.data.load import input_schema, iter_examples, parse_field_overrides, warn_coercions
from reasonsift.data.records import DataError, Example
from reasonsift.data.render import Tokenized, context_overflow, prompt_text, template_notice, tokenize_example
from reasonsift.evaluation.answers import answer_end, extract_answer, is_equivalent
from reasonsift.evaluation.generate import cut_at_stop, generate, load_generator, stop_strings, stop_token_ids
from reasonsift.models import (check_model_files, load_tokenizer, max_positions, model_fingerprint,
                               resolve_device, resolve_dtype)
from reasonsift.runfolder import (RunPaths, check_resume, done_marker, flat_settings, input_fingerprint, is_done,
                                  mark_done, rank_world, read_json, save_config, write_json_atomic, write_rejected_rows,
                                  write_text_atomic)
from reasonsift.runlock import exclusive_lock, lock_key, run_claimed, run_lock, run_units
from reasonsift.scaling.ray_pool import missing_units_error, require_ray

logger = logging.getLogger(__name__)

# critical.* keys that change only speed, never a mask (greedy decoding is batch-independent in fp32).
PERFORMANCE_KEYS = ("batch_size",)
COUNTS = ("rows", "rejected", "no_gold", "wrong", "too_long", "kept")


def check_manifest(paths: RunPaths, data: str, configs: dict[str, Any], model_path: str, device: str,
                   dtype: str) -> None:
    """Refuse to resume a folder whose finished shards came from another input, model or config.

    Greedy decoding depends on the device and dtype too (bf16 on a GPU can take another argmax than
    fp32 on a CPU), so they are part of the manifest. Nothing finished yet: start over quietly.
    """
    leave_out = [f"critical.{k}" for k in PERFORMANCE_KEYS] + ["model.device"]  # the device type is recorded
    manifest = {"input": input_fingerprint(data), "model_fingerprint": model_fingerprint(model_path),
                "device": device, "dtype": dtype, "settings": flat_settings({s: c for s, c in configs.items() if s != "scale"}, leave_out)}
    check_resume(paths.critical_manifest, manifest, any(paths.critical_dir.glob("shard*.jsonl.done")),
                 f"{paths.critical_dir} holds critical masks", "use a new --run folder or delete that folder to "
                 "start over")


def _examples_by_shard(data: str, configs: dict[str, Any], coerced: dict[str, Any] | None = None,
                       ) -> Iterator[tuple[int, list[tuple[Any, Example | None]]]]:
    """(shard index, [(raw row, example or None)]) for consecutive groups of ``shard_size`` input rows;
    a bad row's reason is its raw row's ``error``."""
    dc, cc = configs["data"], configs["critical"]
    shard, buffer = 0, []
    for raw, ex, reason in iter_examples(data, parse_field_overrides(dc.fields), dc.split, dc.skip_bad_rows,
                                         dc.limit, coerced):
        if raw.index // cc.shard_size != shard:
            yield shard, buffer
            shard, buffer = raw.index // cc.shard_size, []
        buffer.append((raw, ex) if ex is not None else (dataclasses.replace(raw, error=reason), None))
    if buffer:
        yield shard, buffer


def _shard_rows(data: str, configs: dict[str, Any], shard: int) -> list[tuple[Any, Example | None]]:
    """One shard's rows, read again from the input (for a shard another rank left unfinished)."""
    return next(rows for s, rows in _examples_by_shard(data, configs) if s == shard)


def _out_row(raw_row: dict[str, Any] | None, ex: Example, response: str, mask: list[int], mode: str) -> str:
    """The JSON line written for one kept example (see the module docstring)."""
    extra = {"critical_mask": mask, "critical_tokens": int(sum(mask)), "response_tokens": len(mask)}
    if mode == "dataset" and raw_row is not None:
        return canonical_json({**raw_row, **extra})
    row: dict[str, Any] = {"id": ex.id}
    if ex.system is not None:  # only chat rows carry a system turn; keep it where train will find it
        row["messages"] = [{"role": "system", "content": ex.system}, {"role": "user", "content": ex.prompt},
                           {"role": "assistant", "content": response}]
    else:
        row.update(prompt=ex.prompt, response=response)
    row.update(answer=ex.answer, source=ex.source, domain=ex.domain, **extra)
    return json.dumps(row, ensure_ascii=False)


class AnswerChecker:
    """Decode a response's token ids and check its final answer against the gold one."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer, self.stops = tokenizer, stop_strings(tokenizer)

    def text(self, ids: list[int]) -> str:
        return cut_at_stop(self.tokenizer.decode(ids, skip_special_tokens=True), self.stops)[0]

    def correct(self, text: str, gold: str, kind: str) -> bool:
        return is_equivalent(extract_answer(text, kind), gold, kind)

    def __call__(self, ids: list[int], gold: str, kind: str) -> bool:
        return self.correct(self.text(ids), gold, kind)

    def complete(self, head: list[int], tail: list[int]) -> bool:
        """Whether ``tail``, written after response head ``head``, has completed a final answer."""
        return answer_end(self.text(head + tail), len(self.text(head))) is not None


def _responses(model: Any, tokenizer: Any, examples: list[Example], configs: dict[str, Any]) -> list[str]:
    """The response each example is tested on: its own, or the model's greedy solution."""
    cc, dc = configs["critical"], configs["data"]
    if cc.responses == "dataset":
        return [ex.response for ex in examples]
    gen_cfg = EvalConfig(max_new_tokens=cc.max_new_tokens, batch_size=cc.batch_size)
    out = []
    for start in range(0, len(examples), cc.batch_size):
        batch = examples[start:start + cc.batch_size]
        prompts = [prompt_text(tokenizer, ex.prompt, dc.system_prompt or ex.system) for ex in batch]
        out += [gens[0].text for gens in generate(model, tokenizer, prompts, gen_cfg)]
    return out


def banned_ids(tokenizer: Any, eos_ids: list[int]) -> set[int]:
    """Ids never tried as substitutes: special tokens and end-of-turn ids (counterfactual module docstring)."""
    return set(tokenizer.all_special_ids) | set(eos_ids)


def _numbers_masks(solutions: list[Tokenized], tokenizer: Any, eos: set[int]) -> tuple[list[list[int]], CriticalStats]:
    """``critical.method=numbers``: digit tokens (and the final EOS), counted like the counterfactual mask."""
    digits = digit_tokens(tokenizer)
    stats, masks = CriticalStats(), []
    for sol in solutions:
        masks.append(numbers_mask(sol.response_ids, digits, eos))
        tested = len(sol.response_ids) - int(bool(sol.response_ids) and sol.response_ids[-1] in eos)
        stats.positions += tested
        stats.critical += sum(masks[-1][:tested])
    return masks, stats


def process_shard(model: Any, tokenizer: Any, rows: list[tuple[Any, Example | None]], configs: dict[str, Any],
                  progress: bool = False, model_positions: int | None = None) -> tuple[list[str], dict[str, Any]]:
    """Critical masks for one shard of input rows: (JSON lines of the kept examples, counts and costs).

    Bad rows, and rows whose prompt plus response exceed ``model_positions`` (``context_overflow``),
    are counted as rejected and listed in the info's ``rejected_rows`` (an error without
    ``--skip-bad-rows``).
    """
    cc, dc = configs["critical"], configs["data"]
    counts = dict.fromkeys(COUNTS, 0)
    counts["rows"] = len(rows)
    check = AnswerChecker(tokenizer)
    examples, raws, rejected_rows = [], [], []

    def overflow(raw: Any, tok: Any, n_window: int) -> bool:
        reason = context_overflow(len(tok.prompt_ids), n_window, model_positions)
        if reason and not dc.skip_bad_rows:
            raise DataError(f"{raw.where}: {reason} (use --skip-bad-rows to quarantine bad rows)")
        if reason:
            counts["rejected"] += 1
            rejected_rows.append(rejected_entry(raw, reason))
        return reason is not None

    for raw, ex in rows:
        if ex is None:
            counts["rejected"] += 1
            rejected_rows.append(rejected_entry(raw, raw.error or "bad row"))
        elif not ex.answer.strip():
            counts["no_gold"] += 1
        elif not overflow(raw, tokenize_example(tokenizer, ex, dc.system_prompt, 0), 1):
            examples.append(ex)
            raws.append(raw)
    kept: list[tuple[Any, Example, str, Tokenized]] = []
    for raw, ex, response in zip(raws, examples, _responses(model, tokenizer, examples, configs)):
        raw_row = raw.row
        if not check.correct(response, ex.answer, cc.answer_kind):
            counts["wrong"] += 1
            continue
        tok = tokenize_example(tokenizer, dataclasses.replace(ex, response=response), dc.system_prompt)
        if overflow(raw, tok, tok.n_response_tokens):
            continue
        if tok.n_response_tokens > cc.max_response_tokens:
            counts["too_long"] += 1
            continue
        kept.append((raw_row, ex, response, tok))
    counts["kept"] = len(kept)
    eos_ids = stop_token_ids(model, tokenizer)
    if cc.method == "numbers":
        masks, stats = _numbers_masks([k[3] for k in kept], tokenizer, set(eos_ids))
    else:
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (eos_ids or [0])[0]
        from tqdm.auto import tqdm

        with tqdm(desc="rollouts", unit="rollout", leave=False, disable=not progress) as bar:
            masks, stats = find_critical(
                model, [k[3] for k in kept], cc.alternatives, cc.rollout_extra_tokens, banned_ids(tokenizer, eos_ids),
                pad_id, eos_ids, cc.batch_size, lambda ids, s: check(ids, kept[s][1].answer, cc.answer_kind),
                progress=bar.update, answer_done=check.complete if cc.stop_at_answer else None,
                may_end=answer_end_tokens(tokenizer) if cc.stop_at_answer and kept else None)
    lines = [_out_row(raw_row, ex, response, mask, cc.responses)
             for (raw_row, ex, response, _), mask in zip(kept, masks)]
    info = {**counts, **dataclasses.asdict(stats), "rejected_rows": rejected_rows,
            "response_tokens": sum(len(m) for m in masks),
            "masked_tokens": sum(sum(m) for m in masks)}
    return lines, info


def load_critical_model(configs: dict[str, Any]) -> tuple[Any, Any]:
    """(model, tokenizer) on ``critical.engine``; numbers masks of dataset responses need the tokenizer only."""
    cc, mc = configs["critical"], configs["model"]
    if cc.method == "numbers" and cc.responses == "dataset":
        return None, load_tokenizer(mc.model, mc.trust_remote_code)
    if cc.engine != "vllm":
        return load_generator(mc.model, mc, cc.engine)
    # vLLM fixes at start how many top tokens a request may ask for; substitutes need k + 1 + banned
    # (a few more for end-of-turn ids only the generation config lists).
    width = cc.alternatives + 1 + len(load_tokenizer(mc.model, mc.trust_remote_code).all_special_ids) + 8
    return load_generator(mc.model, mc, cc.engine, max_logprobs=width)


class CriticalWorker:
    """The model and tokenizer loaded once; ``run`` finds one shard's masks and writes its unit.

    The one place a critical unit is written (atomically, then its done-marker): used by this
    process, by each ``torchrun`` rank, and inside each Ray actor (``reasonsift.scaling.ray_pool``).
    """

    def __init__(self, configs: dict[str, Any], run: str | Path, progress: bool = False) -> None:
        mc = configs["model"]
        self.configs, self.paths, self.progress = configs, RunPaths(Path(run)), progress
        self.model, self.tokenizer = load_critical_model(configs)
        self.positions = max_positions(mc.model, mc.trust_remote_code)

    def info(self) -> dict[str, Any]:
        p = next(self.model.parameters(), None) if hasattr(self.model, "parameters") else None
        if p is None:  # vLLM's engine or a tokenizer-only numbers run: the configured device and dtype
            mc = self.configs["model"]
            device = resolve_device(mc.device)
            return {"device": str(device), "dtype": str(resolve_dtype(mc.dtype, device))}
        return {"device": str(p.device), "dtype": str(p.dtype)}

    def run(self, unit: tuple[int, list[tuple[Any, Example | None]]]) -> None:
        shard, rows = unit
        lines, info = process_shard(self.model, self.tokenizer, rows, self.configs, self.progress, self.positions)
        path = self.paths.critical_shard(shard)
        write_text_atomic(path, "".join(line + "\n" for line in lines))
        mark_done(path, info)


def run_critical(data: str, configs: dict[str, Any], run: str | Path, command: str = "",
                 progress: bool = True) -> dict[str, Any] | None:
    """Find critical tokens for DATA into ``RUN/critical.jsonl``; returns the report.

    Under ``torchrun`` each rank takes every WORLD_SIZE-th shard on its own GPU, then any shard a
    dead or slow rank left (``run_units``); the rank that finishes the last shard merges and returns
    the report (the others return None). With ``scale.backend=ray`` this
    process reads the input and feeds the unfinished shards to a pool of Ray actors, then merges.
    The data and model folder are checked before RUN is created, and RUN is owned (``run_lock``) for
    the whole run.
    """
    mc = configs["model"]
    if not mc.model:
        raise ConfigError("no model given: pass --model PATH_OR_HUB_ID")
    if configs.get("scale", ScaleConfig()).backend == "ray":
        require_ray()  # before any work: a missing extra is a one-line error naming the pip command
    check_source(data, configs["data"].split)
    check_model_files(mc.model, mc)
    where = source_id(data)
    with run_lock(Path(run), lock_key("critical", where, config_to_dict(configs)), "critical", command):
        return _run_critical(data, configs, run, command, progress)


def _run_critical(data: str, configs: dict[str, Any], run: str | Path, command: str = "",
                  progress: bool = True) -> dict[str, Any] | None:
    """``run_critical`` once RUN is owned."""
    start = time.time()
    cc, mc = configs["critical"], configs["model"]
    scale = configs.get("scale", ScaleConfig())
    for key in ("alternatives", "max_new_tokens", "max_response_tokens", "batch_size", "shard_size"):
        if getattr(cc, key) < 1:
            raise ConfigError(f"critical.{key} must be ≥ 1, got {getattr(cc, key)}")
    if cc.rollout_extra_tokens < 0:
        raise ConfigError(f"critical.rollout_extra_tokens must be ≥ 0, got {cc.rollout_extra_tokens}")
    on_ray = scale.backend == "ray"
    paths = RunPaths(Path(run))
    device = resolve_device(mc.device)
    check_manifest(paths, data, configs, mc.model, device.type,
                   str(resolve_dtype(mc.dtype, device)).removeprefix("torch."))
    save_config(paths.critical_config, config_to_dict(configs), command)
    template = template_notice(load_tokenizer(mc.model, mc.trust_remote_code), mc.model)
    from tqdm.auto import tqdm

    rank, world = (0, 1) if on_ray else rank_world()
    shards: list[Path] = []
    rows_seen = [0]  # read by the generator below, however far the work has got
    bar = tqdm(desc="critical", unit="row", disable=not progress)
    coerced: dict[str, Any] = {"rows": 0, "fields": {}}  # every rank reads every row

    def todo() -> Iterator[tuple[int, list[tuple[Any, Example | None]]]]:
        """This rank's unfinished shards, the input read only as far as the work has got."""
        for shard, rows in _examples_by_shard(data, configs, coerced):
            shards.append(paths.critical_shard(shard))
            rows_seen[0] += len(rows)
            bar.update(len(rows))
            if shard % world == rank and not is_done(shards[-1]):
                yield shard, rows

    if on_ray:
        from reasonsift.scaling.ray_pool import run_pool

        pool = run_pool(CriticalWorker, (configs, str(paths.root)), todo(), lambda u: f"shard{u[0]:05d}",
                        address=scale.ray_address, workers=scale.workers, device=mc.device, progress=False)
    else:
        worker: CriticalWorker | None = None  # loaded at the first shard to make, not when all is done

        def make(unit: tuple[int, list[tuple[Any, Example | None]]]) -> None:
            nonlocal worker
            worker = worker or CriticalWorker(configs, paths.root, progress)
            worker.run(unit)

        for unit in todo():  # this rank's shards, as the input streams past
            run_claimed(paths.critical_shard(unit[0]), lambda: make(unit))
    bar.close()
    if not rows_seen[0]:
        raise DataError(f"{data}: no rows")
    warn_coercions(coerced, data)
    if not on_ray:
        # then the shards of ranks that died or fell behind, each read again from the input (rare)
        rest = [s for s, path in enumerate(shards) if not is_done(path)]
        if not run_units([], rest, lambda s: shards[s], lambda s: make((s, _shard_rows(data, configs, s)))):
            logger.info("rank %d: every shard is done; the rank that finished the last one merges", rank)
            return None
    # Whatever the workers said, a shard counts only with its done-marker (a Ray pool can lose one).
    missing = [p for p in shards if not is_done(p)]
    if missing:  # only a Ray pool can end with shards missing; ``run_units`` waits until all are done
        raise missing_units_error([p.name.removesuffix(".jsonl") for p in missing], len(shards), pool.errors)
    with exclusive_lock(paths.merge_lock(paths.critical_dir)) as merging:
        if not merging:
            return None
        scale_report = pool.as_report() if on_ray else {"backend": "local", "world_size": world}
        return _merge(data, configs, paths, shards, start, command, coerced, template, scale_report)


def dataset_card(report: dict[str, Any], configs: dict[str, Any]) -> str:
    """A short dataset card for ``critical.jsonl`` (provenance a user can publish with it)."""
    cc, c = configs["critical"], report["counts"]
    responses = ("the model's own greedy solutions, kept when their final answer is right" if cc.responses == "greedy"
                 else "the rows' own responses, kept when their final answer is right")
    if cc.method == "numbers":
        criterion = ("**Criterion**: numbers only (`critical.method=numbers`), an APPROXIMATION of CFT: a token is\n"
                     "  marked when its text holds a digit; no rollouts. Compare CFT results against it.")
    else:
        criterion = (f"""**Criterion** (CFT, arXiv 2510.10974): a response token is critical when each of the model's
  {cc.alternatives} most probable other tokens in its place, continued greedily (up to the rest of the
  response + {cc.rollout_extra_tokens} tokens{", ended at the first completed final answer" if cc.stop_at_answer else ""}), ends in a wrong final answer
  (`{cc.answer_kind}` extraction; engine `{cc.engine}`).""")
    return f"""---
tags: [reasonsift, critical-tokens, cft, reasoning]
---
# Critical-token masks: {c['kept']} examples, {100 * report['critical_share']:.1f}% of tested tokens critical

- **Source data**: `{report['data']}` ({c['rows']} rows: {c['kept']} kept, {c['wrong']} answered wrong,
  {c['no_gold']} without a gold answer, {c['too_long']} over {cc.max_response_tokens} tokens, {c['rejected']} rejected)
- **Model**: `{report['model']}`; responses: {responses}
- {criterion}
  The final EOS is always marked; special tokens are never substitutes.
- **Cost**: {report['rollouts']:,} rollouts ({report['rollouts_per_position']:.2f} per tested token),
  {report['decoded_tokens']:,} decoded tokens
- **Command**: `{report.get('command', '')}`

`critical.jsonl` holds one row per kept example with `critical_mask` (0/1 per response token as the
model's tokenizer and chat template split it, EOS included). Train on it with
`reasonsift train critical.jsonl --objective cft` and the same tokenizer, template and system
prompt; a mask of another length is refused there.
"""


def _merge(data: str, configs: dict[str, Any], paths: RunPaths, shards: list[Path], start: float,
           command: str, coerced: dict[str, Any] | None = None,
           template: dict[str, Any] | None = None, scale: dict[str, Any] | None = None) -> dict[str, Any]:
    """Concatenate the shards into ``RUN/critical.jsonl`` and write the report."""
    cc, mc = configs["critical"], configs["model"]
    totals, cost = dict.fromkeys(COUNTS, 0), CriticalStats()
    tokens = {"response_tokens": 0, "masked_tokens": 0}
    rejected_rows: list[dict[str, Any]] = []
    for path in shards:
        info = read_json(done_marker(path))
        rejected_rows += info.get("rejected_rows", [])
        for key in tokens:
            tokens[key] += info.get(key, 0)
        for key in COUNTS:
            totals[key] += info.get(key, 0)
        cost.add(CriticalStats(**{f.name: info.get(f.name, 0) for f in dataclasses.fields(CriticalStats)}))
    write_text_atomic(paths.critical, "".join(p.read_text(encoding="utf-8") for p in shards))
    write_rejected_rows(paths.critical_rejected, rejected_rows)
    report = {
        "data": str(data), "model": mc.model, "responses": cc.responses, "method": cc.method, "engine": cc.engine,
        "counts": totals,
        "fields": input_schema(data, parse_field_overrides(configs["data"].fields), configs["data"].split),
        "positions_tested": cost.positions, "critical_tokens": cost.critical,
        "critical_share": cost.critical / cost.positions if cost.positions else 0.0,
        "rollouts": cost.rollouts, "decoded_tokens": cost.decoded_tokens,
        "rollouts_per_position": cost.rollouts / cost.positions if cost.positions else 0.0,
        **tokens,  # over kept responses, EOS included: what train --objective cft sees
        "output": str(paths.critical), "command": command, "wall_s": round(time.time() - start, 1),
        "coerced": coerced or {"rows": 0, "fields": {}}, "template": template or {},
        "scale": scale or {"backend": "local"},
    }
    write_json_atomic(paths.critical_report, report)
    write_text_atomic(paths.critical_card, dataset_card(report, configs))
    if totals["kept"] == 0:
        raise DataError(f"no example kept out of {totals['rows']} rows ({totals['wrong']} answered wrong, "
                        f"{totals['no_gold']} without a gold answer, {totals['rejected']} rejected, "
                        f"{totals['too_long']} too long); see {paths.critical_report}")
    return report
