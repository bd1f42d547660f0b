"""Task families of the synthetic reasoning world: problems, step-by-step traces, corrupted traces.

A family is a setup function (draws a problem: the one-line prompt, a start state and a list of
operations), a step function (applies one operation, returns the new state and the step's *work*)
and a rest function (writes the operations still to do, given the state so far). Difficulty is the
number of operations: a ``steps``-step problem's trace has exactly ``steps`` step lines, then one
line ``answer: <value>``. Operations are drawn in setup from the clean run, so a corrupted run (one
step's result nudged) replays the same problem and the error propagates.

Traces are *state-carrying*: a step line is ``<work>; <rest>``, where the work does one operation on
the result of the line before and the rest restates the operations still to do; the last step line
has no rest, and the answer line copies its result. So every line needs only the line above it (the
first line: the prompt), never a pointer into the prompt ("which is the 4th operation?") or into a
line far back: a tiny model can follow the chain by local copying plus the world's one-step facts.

Families (``steps`` = operations; trace of the example):
  arith  "compute 7 +3 *2 -4 left to right"         "7+3=10; *2 -4" / "10*2=20; -4" / "20-4=16"
  carry  "add 4721+3856 digit by digit"             "1+6+0=7 write 7 carry 0 so far 7; 472+385" / ...
         one line per digit column, least significant first (both numbers have ``steps`` digits);
         "so far" accumulates the written digits, the answer is the last carry (if 1) and "so far"
  list   "list [3,8,1,5] do reverse, drop max"      "reverse [3,8,1,5]=[5,1,8,3]; [5,1,8,3] do drop max" /
         "drop max [2,5,1,8,3]=[2,5,1,3]"  (rotate moves the first item to the end; drop max removes
         the first largest item)
  mod    "mod 7: 3 *4 +5 step by step"              "(3*4)%7=5; +5" / "(5+5)%7=3"
  subst  "let a=3, b=a+2, c=b*2, d=c+a find d"      "b=3+2=5; c=5*2, d=c+3" / "c=5*2=10; d=10+3" /
         "d=10+3=13"  (the rest has every known value substituted, so the next definition's
         operands are already numbers)
"""

from __future__ import annotations

import random
from typing import Any, Callable

CHARSET = "abcdefghijklmnopqrstuvwxyz0123456789 \n+-*=%(),:;[]."
ALL_FAMILIES = ("arith", "carry", "list", "mod", "subst")
LIST_OPS = ("reverse", "sort", "rotate", "drop max", "drop first", "add 1")
ANSWER_PREFIX = "answer: "
REST_SEP = "; "  # between a step line's work and the rest of the problem


def apply_op(x: int, sym: str, k: int) -> int:
    """x + k, x - k or x * k."""
    return x + k if sym == "+" else x - k if sym == "-" else x * k


def nudge(v: int, delta: int) -> int:
    """v moved by delta, or by -delta when that would go negative (wrong values stay plausible)."""
    return v + delta if v + delta >= 0 else v - delta


def fmt_list(xs: tuple[int, ...]) -> str:
    """(3, 1, 2) -> "[3,1,2]"."""
    return "[" + ",".join(map(str, xs)) + "]"


def arith_op(rng: random.Random, x: int) -> tuple[str, int]:
    """One operation on x that keeps a clean chain non-negative and below ~150."""
    sym = rng.choice(["+"] + (["-"] if x >= 1 else []) + (["*"] if x <= 33 else []))
    k = rng.randint(2, 3) if sym == "*" else rng.randint(1, min(9, x) if sym == "-" else 9)
    return sym, k


def list_apply(xs: tuple[int, ...], op: str) -> tuple[int, ...]:
    """Apply one LIST_OPS operation to a tuple."""
    if op == "reverse":
        return xs[::-1]
    if op == "sort":
        return tuple(sorted(xs))
    if op == "rotate":
        return xs[1:] + xs[:1]
    if op == "drop max":
        i = xs.index(max(xs))
        return xs[:i] + xs[i + 1:]
    if op == "drop first":
        return xs[1:]
    return tuple(x + 1 for x in xs)


def _ops_text(ops: list) -> str:
    """Remaining (sym, k, ...) operations as the prompt writes them: "*2 -4"."""
    return " ".join(f"{op[0]}{op[1]}" for op in ops)


# --- arith: a left-to-right chain of + - * on small ints ---
def _arith_setup(rng: random.Random, steps: int) -> tuple[str, Any, list]:
    x = start = rng.randint(1, 30)
    ops = []
    for _ in range(steps):
        ops.append(arith_op(rng, x))
        x = apply_op(x, *ops[-1])
    return f"compute {start} {_ops_text(ops)} left to right", start, ops


def arith_step(x: int, op: tuple[str, int], delta: int) -> tuple[int, str]:
    v = apply_op(x, *op)
    v = nudge(v, delta) if delta else v
    return v, f"{x}{op[0]}{op[1]}={v}"


def _arith_rest(x: int, ops: list) -> str:
    return f"{x} {_ops_text(ops)}"


# --- carry: long addition, one digit column per step, explicit carries ---
def _carry_setup(rng: random.Random, steps: int) -> tuple[str, Any, list]:
    lo, hi = (10 ** (steps - 1) if steps > 1 else 0), 10**steps - 1
    a, b = rng.randint(lo, hi), rng.randint(lo, hi)
    ops = [(a // 10**i % 10, b // 10**i % 10) for i in range(steps)]  # least significant column first
    return f"add {a}+{b} digit by digit", ("", 0), ops


def _carry_step(state: tuple[str, int], op: tuple[int, int], delta: int) -> tuple[tuple, str]:
    digits, c = state
    s = op[0] + op[1] + c
    if delta:  # keep the column sum in 0..19 so the carry stays 0 or 1
        s = s + delta if 0 <= s + delta <= 19 else s - delta
    digits = f"{s % 10}{digits}"  # written digits, most significant first, as the answer reads them
    return (digits, s // 10), f"{op[0]}+{op[1]}+{c}={s} write {s % 10} carry {s // 10} so far {digits}"


def _carry_rest(_: tuple, ops: list) -> str:
    """The columns still to add, as the two numbers' remaining (more significant) digits."""
    return "".join(str(a) for a, _ in reversed(ops)) + "+" + "".join(str(b) for _, b in reversed(ops))


def _carry_answer(state: tuple[str, int]) -> str:
    digits, c = state
    return str(int(f"{c}{digits}"))


# --- list: one list operation per step on a 4-item list of digits ---
def _list_setup(rng: random.Random, steps: int) -> tuple[str, Any, list]:
    xs = tuple(rng.randint(0, 9) for _ in range(4))
    ops, n = [], len(xs)
    for _ in range(steps):  # never drop below 2 items, so every op stays meaningful
        ops.append(rng.choice(LIST_OPS if n > 2 else [o for o in LIST_OPS if not o.startswith("drop")]))
        n -= ops[-1].startswith("drop")
    return f"list {fmt_list(xs)} do " + ", ".join(ops), xs, ops


def list_step(xs: tuple[int, ...], op: str, delta: int) -> tuple[tuple, str]:
    new = list_apply(xs, op)
    if delta:
        new = (nudge(new[0], delta),) + new[1:]
    return new, f"{op} {fmt_list(xs)}={fmt_list(new)}"


def _list_rest(xs: tuple, ops: list) -> str:
    return f"{fmt_list(xs)} do " + ", ".join(ops)


# --- mod: a chain of + - * modulo m, reduced after every step ---
def _mod_setup(rng: random.Random, steps: int) -> tuple[str, Any, list]:
    m = rng.randint(5, 13)
    r = rng.randrange(m)
    syms = [rng.choice("+-*") for _ in range(steps)]
    ops = [(s, rng.randint(2 if s == "*" else 1, m - 1), m) for s in syms]  # no "*1", no "+m": every op acts
    return f"mod {m}: {r} {_ops_text(ops)} step by step", r, ops


def mod_step(r: int, op: tuple[str, int, int], delta: int) -> tuple[int, str]:
    sym, k, m = op
    v = (apply_op(r, sym, k) + delta) % m  # |delta| <= 2 < m, so a nudged value always differs
    return v, f"({r}{sym}{k})%{m}={v}"


def _mod_rest(r: int, ops: list) -> str:
    return f"mod {ops[0][2]}: {r} {_ops_text(ops)}"


# --- subst: variables defined from the previous one (and a constant or an earlier variable) ---
def _subst_setup(rng: random.Random, steps: int) -> tuple[str, Any, list]:
    if steps > 25:
        raise ValueError("subst supports at most 25 steps (one letter per variable)")
    env = {"a": rng.randint(1, 20)}
    defs, ops = [f"a={env['a']}"], []
    for name in "bcdefghijklmnopqrstuvwxyz"[:steps]:
        ref = list(env)[-1]
        x = env[ref]
        sym = rng.choice("+-*") if x <= 30 else rng.choice("+-")
        if sym == "*":
            operand: int | str = rng.randint(2, 3)
        else:
            earlier = [n for n in env if n != ref]
            operand = rng.choice(earlier) if earlier and rng.random() < 0.5 else rng.randint(1, 9)
            if sym == "-" and x < (env[operand] if isinstance(operand, str) else operand):
                sym = "+"  # keep clean values non-negative
        env[name] = apply_op(x, sym, env[operand] if isinstance(operand, str) else operand)
        ops.append((name, ref, sym, operand))
        defs.append(f"{name}={ref}{sym}{operand}")
    return "let " + ", ".join(defs) + f" find {list(env)[-1]}", {"a": env["a"]}, ops


def _subst_step(env: dict, op: tuple, delta: int) -> tuple[dict, str]:
    name, ref, sym, operand = op
    x, y = env[ref], env[operand] if isinstance(operand, str) else operand
    v = apply_op(x, sym, y)
    v = nudge(v, delta) if delta else v
    return {**env, name: v}, f"{name}={x}{sym}{y}={v}"


def _subst_rest(env: dict, ops: list) -> str:
    """The definitions still to do, every variable with a known value replaced by that value."""
    val = lambda v: str(env.get(v, v)) if isinstance(v, str) else str(v)  # noqa: E731
    return ", ".join(f"{name}={val(ref)}{sym}{val(operand)}" for name, ref, sym, operand in ops)


# family -> (setup, step, rest of the problem, answer of the final state)
_FAMILIES: dict[str, tuple[Callable, Callable, Callable, Callable]] = {
    "arith": (_arith_setup, arith_step, _arith_rest, str),
    "carry": (_carry_setup, _carry_step, _carry_rest, _carry_answer),
    "list": (_list_setup, list_step, _list_rest, fmt_list),
    "mod": (_mod_setup, mod_step, _mod_rest, str),
    "subst": (_subst_setup, _subst_step, _subst_rest, lambda env: str(env[list(env)[-1]])),
}


def _execute(family: str, start: Any, ops: list, corrupt: tuple[int, int] | None = None) -> tuple[list[str], str]:
    """Run the ops from start; corrupt=(step index, delta) nudges that step's result."""
    _, step, rest, answer = _FAMILIES[family]
    state, lines = start, []
    for i, op in enumerate(ops):
        state, work = step(state, op, corrupt[1] if corrupt and corrupt[0] == i else 0)
        lines.append(work + (REST_SEP + rest(state, ops[i + 1:]) if i + 1 < len(ops) else ""))
    return lines, answer(state)


def _setup(family: str, rng: random.Random, steps: int) -> tuple[str, Any, list]:
    if family not in _FAMILIES:
        raise ValueError(f"unknown family {family!r}; known: {', '.join(ALL_FAMILIES)}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return _FAMILIES[family][0](rng, steps)


def make_task(family: str, rng: random.Random, steps: int) -> tuple[str, list[str], str]:
    """A clean problem: (one-line prompt, ``steps`` step lines, correct answer)."""
    prompt, start, ops = _setup(family, rng, steps)
    lines, answer = _execute(family, start, ops)
    return prompt, lines, answer


def make_wrong_step(family: str, rng: random.Random, steps: int) -> tuple[str, list[str], str, str]:
    """A problem whose trace has one wrong step that propagates: (prompt, lines, wrong answer, gold).

    Some nudges cancel later (a dropped list item, a mod wrap, b - b); those are redrawn, and the
    last step is the fallback because nudging the final result always changes the answer.
    """
    prompt, start, ops = _setup(family, rng, steps)
    _, gold = _execute(family, start, ops)
    for attempt in range(20):
        k = rng.randrange(steps) if attempt < 19 else steps - 1
        lines, wrong = _execute(family, start, ops, (k, rng.choice((-2, -1, 1, 2))))
        if wrong != gold:
            return prompt, lines, wrong, gold
    raise AssertionError("unreachable: a nudged last step always changes the answer")


def truncate(lines: list[str], rng: random.Random) -> str:
    """The trace cut at a random character before its end, with no answer line."""
    text = "\n".join(lines)
    return text[: rng.randint(1, len(text) - 1)].rstrip() if len(text) > 1 else text


def format_trace(lines: list[str], answer: str) -> str:
    """Step lines, then the final ``answer: <value>`` line."""
    return "\n".join(lines + [ANSWER_PREFIX + answer])
