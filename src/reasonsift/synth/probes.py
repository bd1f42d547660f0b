"""Probes of a synthetic world's θ₀: what it knows before any SFT.

``scripts/build_synth_base.py`` runs them after a build and records the result next to the recipe;
the tests pin the shipped θ₀'s figures. v1: ``probe_base_model`` (held-out facts and first steps);
v2: ``probe_base_model_v2`` (whole problems in the terse pretraining form) and ``probe_copying``
(in-context copying, the induction heads a problem's operations need; docs/synth-world-v2.md).
"""

from __future__ import annotations

import random
from pathlib import Path

import torch

from reasonsift.synth.generate import fact_line, first_step_line


def _greedy_first_lines(model_dir: str | Path, items: list[tuple[str, int]], batch_size: int) -> list[str]:
    """The first generated line after each context, greedy, in left-padded batches.

    ``items``: (context, new-token budget); a batch generates up to its largest budget.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(str(model_dir)).eval()
    lines: list[str] = []
    with torch.no_grad():
        for start in range(0, len(items), batch_size):
            batch = items[start:start + batch_size]
            enc = tok([c for c, _ in batch], return_tensors="pt", padding=True, add_special_tokens=False)
            out = model.generate(**enc, max_new_tokens=max(n for _, n in batch), do_sample=False,
                                 pad_token_id=tok.pad_token_id)  # (B, prompt + new)
            lines += [tok.decode(ids, skip_special_tokens=True).split("\n")[0]
                      for ids in out[:, enc["input_ids"].shape[1]:]]
    return lines


def probe_base_model(model_dir: str | Path, n: int = 200, seed: int = 0) -> dict[str, float]:
    """Greedy accuracy of a model on held-out facts (per family) and one-step problems in context.

    A fact is completed after its ``=`` (carry: after the first ``=``: "7+9+1=" -> "17 write 7 carry
    1"); a one-step problem's whole step line is generated after the statement. Each item must be
    reproduced exactly. Drawn from a stream the corpus never uses, so this measures what θ₀ learned.
    """
    rng = random.Random(f"probe-{seed}")
    items: list[tuple[str, str, str]] = []  # (kind, context, expected continuation)
    for i in range(n):
        if i % 2:
            text = first_step_line(rng)
            lines = text.split("\n")  # statement, first step line (and, for one step, the answer line)
            context, target, kind = lines[0] + "\n", lines[1], "first_step"
        else:
            text = fact_line(rng)
            cut = text.index("=") if " write " in text else text.rindex("=")
            context, target = text[: cut + 1], text[cut + 1:]
            kind = ("carry" if " write " in text else "list" if "[" in text else "mod" if "%" in text
                    else "subst" if text[0].isalpha() else "arith")
        items.append((kind, "\n" + context, target))
    # characters are tokens here: one more than the target, as many as the exact answer needs
    generated = _greedy_first_lines(model_dir, [(c, len(t) + 1) for _, c, t in items], 64)
    hits: dict[str, list[bool]] = {}
    for (kind, _, target), line in zip(items, generated):
        hits.setdefault(kind, []).append(line == target)
    return {k: sum(v) / len(v) for k, v in sorted(hits.items())}


def probe_copying(model_dir: str | Path, n: int = 20, length: int = 30, seed: int = 0) -> dict[str, float]:
    """In-context copying (induction heads): mean per-token loss on ``n`` sequences of ``length`` random
    numbers 0-99, on their first occurrence and on an immediate repetition.

    A model that can copy from its context has a much lower loss on the repetition. θ₀ v2 without a
    copy phase had none and mis-copied a problem's operations (docs/synth-world-v2.md, changes 4-6).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir)).eval()
    rng = random.Random(f"copy-probe-{seed}")
    first, again = [], []
    with torch.no_grad():
        for _ in range(n):
            seq = " ".join(str(rng.randint(0, 99)) for _ in range(length))
            ids = tok(f"{seq} {seq}", add_special_tokens=False, return_tensors="pt")["input_ids"]  # (1, 2L)
            nll = torch.nn.functional.cross_entropy(model(ids).logits[0, :-1], ids[0, 1:], reduction="none")
            half = ids.shape[1] // 2
            first.append(nll[: half - 1].mean().item())  # predicting tokens 2..L of the first occurrence
            again.append(nll[half:].mean().item())  # tokens 2..L of the repetition (its first is a guess)
    return {"first_nll": sum(first) / n, "repeat_nll": sum(again) / n}


def probe_base_model_v2(model_dir: str | Path, n: int = 80, seed: int = 0, max_new_tokens: int = 640) -> dict[str, float]:
    """World v2: greedy accuracy of a model on held-out problems in the *terse* form it was pretrained
    on ("problem : … . solution :" → "… the result is X ."), per family and for K ≤ 10 / K > 10.

    This measures the latent capability θ₀ brings to SFT (the chat/long-CoT form is what SFT adds).
    Problems come from a stream the corpus never uses.
    """
    from reasonsift.synth.v2.tasks import FAMILIES, MAX_STEPS, answer_of, make_problem, solve

    rng = random.Random(f"v2-probe-{seed}")
    items = []
    for i in range(n):
        problem = make_problem(FAMILIES[i % len(FAMILIES)], rng, 1 + (i // len(FAMILIES)) % MAX_STEPS)
        items.append((problem.family, len(problem.ops), f"problem : {problem.prompt} . solution :",
                      answer_of(problem, solve(problem))))
    generated = _greedy_first_lines(model_dir, [("\n" + c, max_new_tokens) for *_, c, _ in items], 40)
    hits: dict[str, list[bool]] = {}
    for (family, k, _, gold), line in zip(items, generated):
        ok = f"the result is {gold} ." in line
        hits.setdefault(family, []).append(ok)
        hits.setdefault("K<=10" if k <= 10 else "K>10", []).append(ok)
        hits.setdefault("all", []).append(ok)
    return {k: sum(v) / len(v) for k, v in sorted(hits.items())}
