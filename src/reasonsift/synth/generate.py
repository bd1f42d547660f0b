"""Datasets of the synthetic world: the SFT pool (with flagged low-quality traces), a held-out eval
set per (family, difficulty) cell, and a pretraining corpus of one-step facts and first steps.

Every row draws from its own ``random.Random`` seeded by a string (``"pool-{seed}-{i}"``), so a
row does not depend on ``n`` or on the other rows, and reruns are identical across processes.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from reasonsift.synth.tasks import (
    ALL_FAMILIES, ANSWER_PREFIX, LIST_OPS, arith_step, list_step, mod_step, apply_op, arith_op,
    format_trace, make_task, make_wrong_step, truncate,
)

LOW_QUALITY_KINDS = ("wrong_step", "truncated")
_ANSWER_RE = re.compile(r"^answer:(.*)$", re.MULTILINE)


def _check_args(families: tuple[str, ...], max_steps: int) -> None:
    unknown = set(families) - set(ALL_FAMILIES)
    if not families or unknown:
        raise ValueError(f"families must be a non-empty subset of {ALL_FAMILIES}, got {families}")
    if not 1 <= max_steps <= 25:
        raise ValueError(f"max_steps must be in 1..25, got {max_steps}")


def generate_pool(n: int, seed: int, families: tuple[str, ...] = ALL_FAMILIES, max_steps: int = 6,
                  low_quality_fraction: float = 0.15) -> list[dict]:
    """An SFT pool of n rows; family and difficulty (1..max_steps) uniform, a fraction corrupted.

    Ground-truth columns (``true_difficulty``, ``low_quality``, ``low_quality_kind``) are for
    checking a selector, never for it to read. ``answer`` is always the correct answer, also when
    ``response`` is a wrong or truncated trace. The problem of row i depends only on (seed, i), not
    on ``low_quality_fraction``: quality is drawn from a separate stream.
    """
    _check_args(families, max_steps)
    if not 0.0 <= low_quality_fraction <= 1.0:
        raise ValueError(f"low_quality_fraction must be in [0, 1], got {low_quality_fraction}")
    rows = []
    for i in range(n):
        rng, qrng = random.Random(f"pool-{seed}-{i}"), random.Random(f"pool-quality-{seed}-{i}")
        family, steps = rng.choice(families), rng.randint(1, max_steps)
        kind = qrng.choice(LOW_QUALITY_KINDS) if qrng.random() < low_quality_fraction else ""
        if kind == "wrong_step":
            prompt, lines, wrong, gold = make_wrong_step(family, rng, steps)
            response = format_trace(lines, wrong)
        else:
            prompt, lines, gold = make_task(family, rng, steps)
            response = truncate(lines, qrng) if kind == "truncated" else format_trace(lines, gold)
        rows.append({"id": f"{family}-{seed}-{i}", "prompt": prompt, "response": response, "answer": gold,
                     "source": family, "domain": "synth", "true_difficulty": steps, "low_quality": bool(kind),
                     "low_quality_kind": kind})
    return rows


def generate_eval(n_per_cell: int, seed: int, families: tuple[str, ...] = ALL_FAMILIES, max_steps: int = 6,
                  exclude_prompts: set[str] | None = None) -> list[dict]:
    """Held-out clean problems: n_per_cell per (family, difficulty) cell, rows {id, question, answer, ...}.

    Drawn from a stream separate from the pool's; prompts in ``exclude_prompts`` (pass the pool's)
    and repeats are skipped. Cells with a tiny problem space (e.g. 1-digit additions: 100 problems)
    can run out once a large pool covers them; such a cell then holds fewer than n_per_cell rows.
    """
    _check_args(families, max_steps)
    exclude = exclude_prompts or set()
    rows = []
    for family in families:
        for steps in range(1, max_steps + 1):
            rng, seen = random.Random(f"eval-{seed}-{family}-{steps}"), set()
            for _ in range(50 * n_per_cell + 100):  # bounded: small cells may be exhausted
                if len(seen) == n_per_cell:
                    break
                prompt, _, answer = make_task(family, rng, steps)
                if prompt in exclude or prompt in seen:
                    continue
                seen.add(prompt)
                rows.append({"id": f"eval-{family}-{seed}-{steps}-{len(seen) - 1}", "question": prompt,
                             "answer": answer, "source": family, "true_difficulty": steps})
    return rows


def fact_line(rng: random.Random) -> str:
    """One elementary fact of the world: the work of a single step, written as traces write it."""
    kind = rng.choice(ALL_FAMILIES)
    if kind == "arith":
        x = rng.randint(0, 150)
        return arith_step(x, arith_op(rng, x), 0)[1]
    if kind == "carry":
        x, y, c = rng.randint(0, 9), rng.randint(0, 9), rng.randint(0, 1)
        s = x + y + c
        return f"{x}+{y}+{c}={s} write {s % 10} carry {s // 10}"
    if kind == "list":
        # values up to 15: a clean list starts at 0..9 and "add 1" may run up to 6 times
        xs = tuple(rng.randint(0, rng.choice((9, 15))) for _ in range(rng.randint(2, 4)))
        return list_step(xs, rng.choice(LIST_OPS), 0)[1]
    if kind == "mod":
        m, sym = rng.randint(5, 13), rng.choice("+-*")
        r, k = rng.randrange(m), rng.randint(2 if sym == "*" else 1, m - 1)
        return mod_step(r, (sym, k, m), 0)[1]
    x = rng.randint(0, 150)  # subst: a definition evaluated once its operands are numbers
    sym, k = arith_op(rng, x)
    return f"{rng.choice('bcdefg')}={x}{sym}{k}={apply_op(x, sym, k)}"


def first_step_line(rng: random.Random) -> str:
    """A problem statement (1..6 steps) and its first step line: reading a problem, in context.

    A one-step problem comes whole, answer line included ("compute 7 +5 left to right\n7+5=12\n
    answer: 12"), as a base LLM has seen easy worked problems. A longer one comes with its first
    step line only, which restates the rest of the problem after ``;`` as every trace line does
    ("compute 7 +5 *2 left to right\n7+5=12; 12 *2"), so θ₀ learns to copy from a statement. Never
    a second step line: continuing from a step line and chaining to the end is what fine-tuning has
    to teach. (A corpus without the ``; rest`` made the chained format much harder to learn in SFT:
    θ_f reached 11% instead of 47% on the demo's held-out set.)
    """
    prompt, lines, answer = make_task(rng.choice(ALL_FAMILIES), rng, rng.randint(1, 6))
    if len(lines) == 1:
        return f"{prompt}\n{lines[0]}\n{ANSWER_PREFIX}{answer}"
    return f"{prompt}\n{lines[0]}"


def pretraining_corpus(n_lines: int, seed: int, problem_share: float = 0.5) -> list[str]:
    """n_lines items: one-step facts ("7+5=12", "(9*3)%7=6", "sort [3,1,2]=[1,2,3]") and, with
    probability ``problem_share``, a problem statement with its first step line (whole, with its
    answer line, when the problem has one step; see ``first_step_line``).

    A base model learns the facts, to read a problem statement and the answer format here, but never
    sees a second step line: chaining steps to an answer is what fine-tuning has to teach.
    """
    rng = random.Random(f"pretrain-{seed}")
    return [first_step_line(rng) if rng.random() < problem_share else fact_line(rng) for _ in range(n_lines)]


def write_jsonl(rows: list[dict], path: str | Path) -> Path:
    """Write rows as JSON lines (parents created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    return path


def extract_answer(response: str) -> str | None:
    """The value on the first ``answer:`` line (stripped), or None when there is none."""
    match = _ANSWER_RE.search(response)
    return match.group(1).strip() if match else None


def check_answer(response: str, gold: str) -> bool:
    """True when the response's first ``answer:`` line equals gold exactly (both stripped)."""
    answer = extract_answer(response)
    return answer is not None and answer == gold.strip()
