"""Critical tokens by counterfactual substitution (CFT, arXiv 2510.10974; token-objectives.md §1).

For a verified-correct response y_1..y_T to a question with gold answer A:

1. one forward pass gives, at every response position t, the model's most probable tokens other
   than y_t (CFT: the 2nd and 3rd of a greedy solution, whose 1st is y_t itself);
2. each substitute a is placed after the prefix (question, y_<t) as a token id (re-encoding text
   would let BPE merge it with its neighbours) and the sequence is continued greedily;
3. y_t is critical iff every such continuation ends in a wrong final answer; one right answer
   makes y_t replaceable.

Decisions the sources leave open (token-objectives.md §1.3), made here:

* Substitutes never include special tokens (EOS, pad, chat-turn markers): a substituted EOS would
  end the response on the spot, a test of truncation rather than of the token.
* The EOS that ends the response is not tested and is always marked critical: the model has to
  learn to stop, and leaving it out of a sparse CFT mask would teach it to ramble.
* A position with no usable substitute (a tiny vocabulary) is marked critical: no alternative
  reaches the answer, which is the criterion read literally.
* A rollout from position t may write (T - t) + ``extra_tokens`` tokens: the original remainder
  plus a margin. A rollout that runs out counts with the answer it has written so far.
* Substitutes are tried in rounds, most probable first; a later round rolls out only positions
  whose earlier substitutes all failed. The mask is the same as rolling out every substitute, and
  with CFT's "< 12 % critical" most positions need one rollout instead of two.
* With ``answer_done`` (``critical.stop_at_answer``), a rollout ends at the first final answer it
  completes (a closed ``\boxed{}``, a ``####`` line, an ``answer:`` line; ``answers.answer_end``) and
  is judged by the text up to there: greedy decoding is prefix-consistent, so this is the judgement
  of the full rollout cut at that answer, for a fraction of the decoded tokens. An answer completed
  before the substitute does not count (it was the original's).

Batching: on the ``hf`` engine all rollouts of a round (over every example of a shard) are sorted
by length and run through ``model.generate`` in left-padded batches; a test checks the batched
result against one-at-a-time greedy decoding. On ``vllm`` a block of rollouts is submitted at once,
ordered by response so the rollouts of one response share its cached prefix blocks.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Callable

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from reasonsift.data.render import Tokenized
from reasonsift.evaluation.vllm_engine import is_vllm
from reasonsift.scoring.scorer import decoder_hidden


BLOCK_BATCHES = 16  # rollout prefixes are materialised this many generate() batches at a time


@dataclass
class CriticalStats:
    """What finding critical tokens cost and found (summed over solutions)."""

    positions: int = 0  # response tokens tested
    critical: int = 0  # ... of which critical (the EOS that is not tested is counted in the mask only)
    rollouts: int = 0  # greedy continuations run
    decoded_tokens: int = 0  # tokens those continuations generated

    def add(self, other: "CriticalStats") -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


@torch.inference_mode()
def substitutes(model: Any, prompt_ids: list[int], response_ids: list[int], k: int,
                banned: set[int]) -> list[list[int]]:
    """For each response position, the ``k`` most probable tokens other than the response's own
    token and ``banned`` ids, most probable first (fewer when the vocabulary runs out)."""
    width = k + 1 + len(banned)  # enough candidates to survive the exclusions
    if is_vllm(model):
        from reasonsift.evaluation.vllm_engine import top_tokens

        [ranked] = top_tokens(model, [prompt_ids + response_ids], width)
        top = ranked[len(prompt_ids) - 1: len(prompt_ids) + len(response_ids) - 1]  # (R, ≤ width)
    else:
        hidden, _ = decoder_hidden(model, [prompt_ids + response_ids], packed=False)  # (P + R, d)
        # Logits only at the R rows that predict response tokens (row t predicts token t + 1): (R, V).
        logits = model.get_output_embeddings()(hidden[len(prompt_ids) - 1: len(prompt_ids) + len(response_ids) - 1])
        top = logits.float().topk(min(logits.shape[-1], width), dim=-1).indices.tolist()  # (R, width)
    out = []
    for t, candidates in enumerate(top):
        skip = banned | {response_ids[t]}
        out.append([c for c in candidates if c not in skip][:k])
    return out


class _StopWhenDone(StoppingCriteria):
    """HF stopping criterion: row r of the batch ends once ``done(rows[r], new ids)`` says its answer is complete.

    Asked only after a token in ``may_end`` (one whose text holds ``}`` or a newline), so the text is
    decoded a few times per line rather than at every step.
    """

    def __init__(self, rows: list[int], width: int, done: Callable[[int, list[int]], bool], may_end: set[int]):
        self.rows, self.width, self.done, self.may_end = rows, width, done, may_end
        self.stopped_at: dict[int, int] = {}  # batch row -> new tokens it kept

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        finished = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)  # (B,)
        last = input_ids[:, -1].tolist()
        for r, tok in enumerate(last):
            if r in self.stopped_at:
                finished[r] = True
            elif tok in self.may_end and self.done(self.rows[r], input_ids[r, self.width:].tolist()):
                self.stopped_at[r] = input_ids.shape[1] - self.width
                finished[r] = True
        return finished


def answer_end_tokens(tokenizer: Any) -> set[int]:
    """Ids whose text holds a character that can complete a final answer (``answers.ANSWER_END_CHARS``)."""
    from reasonsift.evaluation.answers import ANSWER_END_CHARS

    pieces = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    return {i for i, piece in enumerate(pieces) if any(c in piece for c in ANSWER_END_CHARS)}


@torch.inference_mode()
def greedy_rollouts(model: Any, prefixes: list[list[int]], caps: list[int], pad_id: int, eos_ids: list[int],
                    batch_size: int, progress: Callable[[int], None] | None = None,
                    done: Callable[[int, list[int]], bool] | None = None,
                    may_end: set[int] | None = None) -> list[list[int]]:
    """Greedy continuation of each token prefix: at most ``caps[i]`` new tokens, cut before the first EOS.

    Prefixes are sorted by length and left-padded in batches of ``batch_size``, so rows of a batch
    need little padding; results come back in the input order. ``progress(n)``: n more rolled out.
    ``done(i, new_ids)``: continuation i is complete (its final answer written) and ends there; asked
    after tokens in ``may_end`` (``answer_end_tokens``). A vLLM ``model`` takes all prefixes at once.
    """
    if is_vllm(model):
        from reasonsift.evaluation.vllm_engine import greedy

        out = greedy(model, prefixes, caps, eos_ids, done)
        if progress is not None:
            progress(len(prefixes))
        return out
    device = next(model.parameters()).device
    order = sorted(range(len(prefixes)), key=lambda i: len(prefixes[i]))
    out: list[list[int]] = [[] for _ in prefixes]
    eos = set(eos_ids)
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        width = max(len(prefixes[i]) for i in rows)
        ids = torch.full((len(rows), width), pad_id, dtype=torch.long)  # (B, W), left-padded
        mask = torch.zeros((len(rows), width), dtype=torch.long)  # (B, W)
        for r, i in enumerate(rows):
            ids[r, width - len(prefixes[i]):] = torch.tensor(prefixes[i])
            mask[r, width - len(prefixes[i]):] = 1
        budget = max(caps[i] for i in rows)
        if budget <= 0:
            continue
        stop = _StopWhenDone(rows, width, done, may_end or set()) if done else None
        gen = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), max_new_tokens=budget,
                             do_sample=False, temperature=None, top_p=None, top_k=None, pad_token_id=pad_id,
                             eos_token_id=eos_ids or None,
                             stopping_criteria=StoppingCriteriaList([stop]) if stop else None)  # (B, W + new)
        for r, i in enumerate(rows):
            new = gen[r, width:].tolist()[:min(caps[i], stop.stopped_at.get(r, caps[i]) if stop else caps[i])]
            cut = next((j for j, tok in enumerate(new) if tok in eos), len(new))
            out[i] = new[:cut]
        if progress is not None:
            progress(len(rows))
    return out


def find_critical(model: Any, solutions: list[Tokenized], alternatives: int, extra_tokens: int, banned: set[int],
                  pad_id: int, eos_ids: list[int], batch_size: int,
                  is_correct: Callable[[list[int], int], bool],
                  progress: Callable[[int], None] | None = None,
                  answer_done: Callable[[list[int], list[int]], bool] | None = None,
                  may_end: set[int] | None = None) -> tuple[list[list[int]], CriticalStats]:
    """The 0/1 critical mask over each solution's response tokens, and what it cost.

    ``solutions``: verified-correct responses, tokenized exactly as training will tokenize them
    (EOS included when the response ends with it). ``is_correct(response_ids, s)`` decodes a full response (prefix, substitute and
    continuation) and checks its final answer against solution ``s``'s gold; ``progress(n)`` is told of every n rollouts done.
    ``answer_done(head_ids, tail_ids)``: the continuation ``tail_ids`` of response head ``head_ids`` has
    completed a final answer, so the rollout ends there (``may_end``: the ids after which to ask).
    """
    stats = CriticalStats()
    eos = set(eos_ids)
    subs, tested = [], []
    for sol in solutions:
        subs.append(substitutes(model, sol.prompt_ids, sol.response_ids, alternatives, banned))
        last = len(sol.response_ids) - 1
        tested.append([t for t in range(len(sol.response_ids)) if not (t == last and sol.response_ids[t] in eos)])
        stats.positions += len(tested[-1])
    # all_wrong[s][t]: every substitute tried so far at position t ended wrong (starts True: none tried).
    all_wrong = [[True] * len(sol.response_ids) for sol in solutions]
    for j in range(alternatives):
        todo = [(s, t) for s, positions in enumerate(tested) for t in positions
                if all_wrong[s][t] and len(subs[s][t]) > j]
        if not todo:
            break
        # Shortest prefixes first (hf: rows of a padded batch of similar length), or response by response
        # (vllm: rollouts of one response share its cached prefix blocks); built a block at a time: all
        # prefixes of a shard at once would hold ~ Σ T² token ids (a billion for 64 responses of 4k tokens).
        todo.sort(key=(lambda st: st) if is_vllm(model) else (lambda st: len(solutions[st[0]].prompt_ids) + st[1]))
        block = batch_size * BLOCK_BATCHES
        for b in range(0, len(todo), block):
            part = todo[b:b + block]
            heads = [solutions[s].response_ids[:t] + [subs[s][t][j]] for s, t in part]
            prefixes = [solutions[s].prompt_ids + head for (s, _), head in zip(part, heads)]
            caps = [len(solutions[s].response_ids) - t + extra_tokens for s, t in part]
            done = (lambda r, tail, heads=heads: answer_done(heads[r], tail)) if answer_done else None
            tails = greedy_rollouts(model, prefixes, caps, pad_id, eos_ids, batch_size, progress, done, may_end)
            for (s, t), head, tail in zip(part, heads, tails):
                if is_correct(head + tail, s):
                    all_wrong[s][t] = False
            stats.decoded_tokens += sum(len(tail) for tail in tails)
        stats.rollouts += len(todo)
    masks = [[int(w) for w in wrong] for wrong in all_wrong]  # an untested final EOS stays 1 (module docstring)
    stats.critical = sum(sum(m[t] for t in positions) for m, positions in zip(masks, tested))
    return masks, stats
