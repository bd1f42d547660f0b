"""World v2's datasets: the SFT pool (four sources), held-out problems, θ₀'s pretraining corpus,
and the word-level tokenizer (design: docs/synth-world-v2.md).

Every row draws from its own ``random.Random`` seeded by a string, so a row depends only on
(seed, index), and reruns are identical across processes and machines.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any

from reasonsift.synth.v2.tasks import (
    ANSWER_PREFIX, FAMILIES, MAX_STEPS, Step, Style, answer_of, fact, make_problem, render, solve, step_line, terse_solution,
)

LOW_QUALITY_KINDS = ("wrong_step", "truncated", "loop")
_PIECE = re.compile(r"[a-z]+|\d+|[^\sa-z\d]+|\n")  # the pieces world_tokenizer makes: one token each


def approx_tokens(text: str) -> int:
    """Tokens of ``text`` under ``world_tokenizer`` (the same split, without building it)."""
    return len(_PIECE.findall(text))


@dataclass(frozen=True)
class Source:
    """One source of the pool: its share, difficulty range, quality and writing style."""

    share: float
    steps: tuple[int, int]
    low_quality: float
    kinds: tuple[str, ...]  # low-quality kinds, drawn uniformly (repeat one to weight it)
    style: Style


SOURCES: dict[str, Source] = {
    "textbook": Source(0.3, (1, 8), 0.03, ("wrong_step", "truncated"), Style(check=0.10, wait=0.00, verify_from=99)),
    "olympiad": Source(0.2, (8, 16), 0.05, ("wrong_step", "truncated"), Style(check=0.50, wait=0.10, verify_from=1)),
    "forum": Source(0.3, (1, 16), 0.35, ("wrong_step", "truncated", "loop"), Style(check=0.15, wait=0.05, verify_from=8)),
    "distilled": Source(0.2, (4, 14), 0.25, ("loop", "loop", "wrong_step"), Style(check=0.30, wait=0.15, verify_from=4)),
}


def _pick_source(rng: random.Random) -> str:
    x, acc = rng.random(), 0.0
    for name, src in SOURCES.items():
        acc += src.share
        if x < acc:
            return name
    return name


def _wrong_step_trace(family: str, rng: random.Random, steps: int, style: Style) -> tuple[Any, list[str], str]:
    """A problem whose trace has one wrong result that propagates to a wrong answer."""
    problem = make_problem(family, rng, steps)
    gold = answer_of(problem, solve(problem))
    for attempt in range(20):  # some nudges cancel later (a dropped item, a mod wrap); redraw those
        k = rng.randrange(steps) if attempt < 19 else steps - 1
        wrong_steps = solve(problem, (k, rng.choice((-2, -1, 1, 2))))
        wrong = answer_of(problem, wrong_steps)
        if wrong != gold:
            return problem, render(problem, wrong_steps, rng, style, corrupt_at=k) + [ANSWER_PREFIX + wrong], gold
    raise AssertionError("unreachable: a nudged last step always changes the answer")


def _loop_lines(problem: Any, steps: list[Step], lines: list[str], rng: random.Random) -> list[str]:
    """Degenerate repetition: from a random step on, that step and a "redo" line over and over,
    until 600-1,200 tokens; no answer line (what a long-CoT model's failure looks like)."""
    j = rng.randrange(len(steps))
    head = lines[: 2 + j]  # opening, plan, steps before j
    repeat = [step_line(j + 1, problem, steps[j], rng, Style(check=0.0, wait=0.0)),
              f"wait , let me redo step {j + 1} ."]
    target = rng.randint(600, 1200)
    out = list(head) + repeat * 3  # a loop repeats, even when the trace is already long when it starts
    while approx_tokens("\n".join(out)) < target:
        out += repeat
    return out


def make_row(seed: int, i: int) -> dict[str, Any]:
    """Row i of the pool of ``seed``: source, family and K drawn, then a clean or low-quality trace."""
    rng, qrng = random.Random(f"v2-pool-{seed}-{i}"), random.Random(f"v2-pool-quality-{seed}-{i}")
    source = _pick_source(rng)
    src = SOURCES[source]
    family, steps = rng.choice(FAMILIES), rng.randint(*src.steps)
    kind = qrng.choice(src.kinds) if qrng.random() < src.low_quality else ""
    if kind == "wrong_step":
        problem, lines, gold = _wrong_step_trace(family, rng, steps, src.style)
        response = "\n".join(lines)
    else:
        problem = make_problem(family, rng, steps)
        clean = solve(problem)
        gold = answer_of(problem, clean)
        lines = render(problem, clean, rng, src.style)
        if kind == "truncated":
            words = "\n".join(lines).split(" ")
            cut = qrng.randint(max(1, int(0.2 * len(words))), max(1, int(0.9 * len(words))))
            response = " ".join(words[:cut]).rstrip()
        elif kind == "loop":
            response = "\n".join(_loop_lines(problem, clean, lines, qrng))
        else:
            response = "\n".join(lines + [ANSWER_PREFIX + gold])
    return {"id": f"v2-{seed}-{i}", "prompt": problem.prompt, "response": response, "answer": gold,
            "source": source, "domain": "synth-v2", "family": family, "true_difficulty": steps,
            "low_quality": bool(kind), "low_quality_kind": kind}


def generate_pool(n: int, seed: int) -> list[dict[str, Any]]:
    """An SFT pool of n rows from the four SOURCES (shares, difficulty, quality and style per source).

    Ground-truth columns (``family``, ``true_difficulty``, ``low_quality``, ``low_quality_kind``) are
    for checking a selector, never for it to read; ``answer`` is always the correct answer.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return [make_row(seed, i) for i in range(n)]


def generate_eval(n_per_cell: int, seed: int, exclude_prompts: set[str] | None = None,
                  max_steps: int = MAX_STEPS) -> list[dict[str, Any]]:
    """Held-out clean problems: n_per_cell per (family, K) cell, K = 1..max_steps, prompts not in
    ``exclude_prompts`` (pass the pool's); rows {id, question, answer, family, source, true_difficulty}."""
    exclude = exclude_prompts or set()
    rows = []
    for family in FAMILIES:
        for steps in range(1, max_steps + 1):
            rng, seen = random.Random(f"v2-eval-{seed}-{family}-{steps}"), set()
            for _ in range(50 * n_per_cell + 100):
                if len(seen) == n_per_cell:
                    break
                problem = make_problem(family, rng, steps)
                if problem.prompt in exclude or problem.prompt in seen:
                    continue
                seen.add(problem.prompt)
                rows.append({"id": f"v2-eval-{family}-{seed}-{steps}-{len(seen) - 1}", "question": problem.prompt,
                             "answer": answer_of(problem, solve(problem)), "family": family, "source": family,
                             "true_difficulty": steps})
    return rows


def pretraining_corpus(n_items: int, seed: int, solution_share: float = 0.7, long_share: float = 0.0) -> list[str]:
    """θ₀'s corpus: one-step facts and, with probability ``solution_share``, whole problems
    (every family, K = 1..MAX_STEPS) solved in the terse textbook form.

    With ``long_share`` > 0, that share of items are instead clean long-CoT traces written as plain
    text (the bare problem on one line, the trace, the answer line; no chat turn), the way a base
    LLM has seen worked solutions on the web before reasoning SFT (docs/synth-world-v2.md, change 8).
    At 0 (the default) the stream is the one earlier θ₀ builds were trained on and holds no long form.
    """
    rng = random.Random(f"v2-pretrain-{seed}")
    out = []
    for _ in range(n_items):
        if long_share and rng.random() < long_share:
            problem = make_problem(rng.choice(FAMILIES), rng, rng.randint(1, MAX_STEPS))
            steps = solve(problem)
            lines = render(problem, steps, rng, SOURCES[rng.choice(list(SOURCES))].style)
            out.append("\n".join([problem.prompt] + lines + [ANSWER_PREFIX + answer_of(problem, steps)]))
        elif rng.random() < solution_share:
            out.append(terse_solution(make_problem(rng.choice(FAMILIES), rng, rng.randint(1, MAX_STEPS))))
        else:
            out.append(fact(rng))
    return out


VOCAB_NUMBERS = range(-20, 301)


def world_tokenizer() -> Any:
    """The world's word-level tokenizer: byte-level pre-tokenisation (words with their leading space,
    whole numbers, punctuation runs, newlines), one vocabulary entry per piece.

    The vocabulary is every piece of a fixed seeded sample of the world's text (pools of seeds 0-2,
    held-out sets, the pretraining corpus) plus the integers in VOCAB_NUMBERS with and without a
    leading space, sorted, so it does not depend on the order of generation. Deterministic.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    from reasonsift.models import LOCAL_SPECIAL_TOKENS, wrap_tokenizer

    pre = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    texts = []
    for seed in range(3):
        for row in generate_pool(1500, seed):
            texts += [row["prompt"], row["response"]]
        texts += [r["question"] for r in generate_eval(3, seed)]
    texts += pretraining_corpus(3000, 0)
    pieces: set[str] = set()
    for text in texts:
        for line in text.split("\n"):
            pieces.update(p for p, _ in pre.pre_tokenize_str(line))
    pieces.update(p for n in VOCAB_NUMBERS for p, _ in pre.pre_tokenize_str(f"{n} {n}"))
    pieces.update(p for p, _ in pre.pre_tokenize_str("\n"))
    vocab = {t: i for i, t in enumerate(LOCAL_SPECIAL_TOKENS)}
    for piece in sorted(pieces):
        vocab.setdefault(piece, len(vocab))
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre
    tk.decoder = decoders.ByteLevel()
    tk.add_special_tokens(LOCAL_SPECIAL_TOKENS)
    return wrap_tokenizer(tk)
