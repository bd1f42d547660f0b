"""World v2's problems and long traces (design: docs/synth-world-v2.md).

A problem is a family, a start state and K operations. ``solve`` runs them and returns one ``Step``
per operation (the state before and after, the work as the trace writes it, and its check). A trace
is rendered from those steps in a *style* (how often a step is checked, how often the solver
back-tracks, whether it verifies the chain at the end), so the same problem can be written by
different sources. Every text piece is separated by spaces, which the word tokenizer keeps as
one token per word, number or punctuation mark.

Families (K = operations):
  arith  "compute 7 + 3 * 2 - 4 left to right"      work "10 * 2 = 20", check "20 / 2 = 10"
  mod    "mod 7 : 3 * 4 + 5 step by step"           work "( 3 * 4 ) mod 7 = 5", check "12 mod 7 = 5"
  list   "list [3,8,1,5] do reverse , sort"         work "reverse [3,8,1,5] = [5,1,8,3]"
  subst  "let a = 3 , b = a + 2 , c = b * 2 find c"  work "c = 5 * 2 = 10", check "10 / 2 = 5"
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import Any

# v1's operations and answer line, same semantics
from reasonsift.synth.tasks import ANSWER_PREFIX, apply_op, fmt_list, list_apply, nudge

FAMILIES = ("arith", "mod", "list", "subst")
MAX_STEPS = 16
LIST_OPS = ("reverse", "sort", "rotate", "drop first", "drop max", "add 1")  # v1's, in v2's draw order
ARITH_MAX = 60  # clean arith/subst values stay in 0..ARITH_MAX, so every number is a common token


@dataclass(frozen=True)
class Problem:
    """One problem: ``prompt`` is the user turn; ``ops`` the K operations in order."""

    family: str
    prompt: str
    start: Any
    ops: tuple
    modulus: int = 0  # mod only


@dataclass(frozen=True)
class Step:
    """One operation applied: the state it reaches and how a trace writes it."""

    after: Any
    op_text: str  # "* 2", "reverse", "c = b * 2"
    work: str  # "10 * 2 = 20"
    check: str  # "20 / 2 = 10 , yes"
    rest: str = ""  # the operations still to do after this one ("- 4 , + 9"; subst: known values substituted)


@dataclass(frozen=True)
class Style:
    """How a source writes its traces (probabilities per step; ``verify_from``: K from which the
    chain is restated at the end)."""

    check: float = 0.15
    wait: float = 0.05
    verify_from: int = 8


def fmt_state(family: str, state: Any) -> str:
    """A state as the trace and the answer line write it."""
    if family == "list":
        return fmt_list(state)
    if family == "subst":
        return str(state[1])
    return str(state)


def _inverse(v: int, sym: str, k: int) -> str:
    """The check of ``x sym k = v``: the inverse operation back to x."""
    inv = {"+": "-", "-": "+", "*": "/"}[sym]
    return f"{v} {inv} {k} = {v - k if sym == '+' else v + k if sym == '-' else v // k}"


def _arith_op(rng: random.Random, x: int) -> tuple[str, int]:
    """An operation that keeps a clean chain in 0..ARITH_MAX."""
    choices = []
    if x + 1 <= ARITH_MAX:
        choices.append("+")
    if x >= 1:
        choices.append("-")
    if x <= ARITH_MAX // 2 and x >= 1:
        choices.append("*")
    sym = rng.choice(choices)
    if sym == "+":
        return sym, rng.randint(1, min(9, ARITH_MAX - x))
    if sym == "-":
        return sym, rng.randint(1, min(9, x))
    return sym, 3 if x <= ARITH_MAX // 3 and rng.random() < 0.3 else 2


def make_problem(family: str, rng: random.Random, steps: int) -> Problem:
    """A clean problem of ``family`` with ``steps`` operations, drawn from ``rng``."""
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; known: {', '.join(FAMILIES)}")
    if not 1 <= steps <= MAX_STEPS:
        raise ValueError(f"steps must be in 1..{MAX_STEPS}, got {steps}")
    if family == "arith":
        x = start = rng.randint(1, 40)
        ops = []
        for _ in range(steps):
            ops.append(_arith_op(rng, x))
            x = apply_op(x, *ops[-1])
        text = " ".join(f"{s} {k}" for s, k in ops)
        return Problem(family, f"compute {start} {text} left to right", start, tuple(ops))
    if family == "mod":
        m = rng.randint(5, 11)
        r = rng.randrange(m)
        ops = []
        for _ in range(steps):
            sym = rng.choice("+-*")
            ops.append((sym, rng.randint(2 if sym == "*" else 1, m - 1)))
        text = " ".join(f"{s} {k}" for s, k in ops)
        return Problem(family, f"mod {m} : {r} {text} step by step", r, tuple(ops), modulus=m)
    if family == "list":
        xs = tuple(rng.randint(0, 9) for _ in range(4))
        ops, n, top = [], len(xs), max(xs)
        for _ in range(steps):  # never below 2 items; values stay below 20
            allowed = [o for o in LIST_OPS if (n > 2 or not o.startswith("drop")) and (o != "add 1" or top < 19)]
            ops.append(rng.choice(allowed))
            n -= ops[-1].startswith("drop")
            top += ops[-1] == "add 1"
        return Problem(family, f"list {fmt_list(xs)} do " + " , ".join(ops), xs, tuple(ops))
    env = {"a": rng.randint(1, 20)}
    ops = []
    for name in "bcdefghijklmnopqrstuvwxyz"[:steps]:
        ref = list(env)[-1]
        x = env[ref]
        earlier = [n for n in env if n != ref]
        sym = rng.choice(("+", "-", "*") if 1 <= x <= ARITH_MAX // 2 else ("+", "-"))
        if sym == "*":
            operand: int | str = 2
        else:
            operand = rng.choice(earlier) if earlier and rng.random() < 0.4 else rng.randint(1, 9)
        y = env[operand] if isinstance(operand, str) else operand
        if sym == "+" and x + y > ARITH_MAX:
            sym = "-"
        if sym == "-" and x - y < 0:
            sym, operand, y = "+", (operand if x + y <= ARITH_MAX else 1), (y if x + y <= ARITH_MAX else 1)
        env[name] = apply_op(x, sym, y)
        ops.append((name, ref, sym, operand))
    defs = ", ".join(f"{n} = {r} {s} {o}" for n, r, s, o in ops)
    return Problem(family, f"let a = {env['a']} , {defs.replace(',', ' ,')} find {ops[-1][0]}",
                   ("a", env["a"]), tuple(ops))


def solve(problem: Problem, corrupt: tuple[int, int] | None = None) -> list[Step]:
    """Run the operations; ``corrupt=(i, delta)`` nudges step i's result (the error propagates)."""
    state, steps = problem.start, []
    env = {"a": problem.start[1]} if problem.family == "subst" else {}
    for i, op in enumerate(problem.ops):
        delta = corrupt[1] if corrupt and corrupt[0] == i else 0
        if problem.family == "arith":
            sym, k = op
            v = nudge(apply_op(state, sym, k), delta)
            step = Step(v, f"{sym} {k}", f"{state} {sym} {k} = {v}", _inverse(v, sym, k) + " , yes")
        elif problem.family == "mod":
            sym, k = op
            m = problem.modulus
            raw = apply_op(state, sym, k)
            v = (raw + delta) % m
            step = Step(v, f"{sym} {k}", f"( {state} {sym} {k} ) mod {m} = {v}", f"{raw} mod {m} = {v} , yes")
        elif problem.family == "list":
            new = list_apply(state, op)
            if delta:
                new = (nudge(new[0], delta),) + new[1:]
            step = Step(new, op, f"{op} {fmt_list(state)} = {fmt_list(new)}",
                        f"{fmt_list(new)} has {len(new)} items , yes")
        else:
            name, ref, sym, operand = op
            x = env[ref]
            y = env[operand] if isinstance(operand, str) else operand
            v = nudge(apply_op(x, sym, y), delta)
            env[name] = v
            step = Step((name, v), f"{name} = {ref} {sym} {operand}", f"{name} = {x} {sym} {y} = {v}",
                        _inverse(v, sym, y) + " , yes")
        steps.append(replace(step, rest=_rest(problem, i + 1, env)))
        state = step.after
    return steps


def _rest(problem: Problem, i: int, env: dict[str, int]) -> str:
    """Operations i.. as a trace restates them; subst with every known value substituted, so the
    next definition's operands are numbers on the line above (a tiny model copies, never searches)."""
    if problem.family == "subst":
        val = lambda v: str(env.get(v, v)) if isinstance(v, str) else str(v)  # noqa: E731
        return " , ".join(f"{n} = {val(r)} {s} {val(o)}" for n, r, s, o in problem.ops[i:])
    if problem.family == "list":
        return " , ".join(problem.ops[i:])
    return " , ".join(f"{s} {k}" for s, k in problem.ops[i:])


def answer_of(problem: Problem, steps: list[Step]) -> str:
    """The final answer the steps reach."""
    return fmt_state(problem.family, steps[-1].after)


def opening(problem: Problem, steps: list[Step]) -> str:
    """The problem restated in the solver's words (the operations' text, never their results, so
    a corrupted run restates the same problem)."""
    k = len(problem.ops)
    ops = " , ".join(s.op_text for s in steps)
    if problem.family == "arith":
        return f"we start from {problem.start} and apply {k} operations in order : {ops} ."
    if problem.family == "mod":
        return (f"we work modulo {problem.modulus} . we start from {problem.start} and apply {k} operations : "
                f"{ops} , reducing after each one .")
    if problem.family == "list":
        return (f"the list is {fmt_list(problem.start)} with {len(problem.start)} items . "
                f"there are {k} operations : {ops} .")
    return (f"we know a = {problem.start[1]} and there are {k} definitions : {ops} . "
            f"we want {problem.ops[-1][0]} .")


def plan(problem: Problem) -> str:
    """The plan: the number of steps, a strategy for the problem's size, and a family remark."""
    k = len(problem.ops)
    if k <= 3:
        size = "this is short , so i will go straight through ."
    elif k <= 9:
        size = "i will keep the running value and check the harder steps ."
    else:
        size = "this is long , so i will number the steps , check as i go , and verify the whole chain at the end ."
    fam = problem.family
    if fam == "arith":
        n_mul = sum(s == "*" for s, _ in problem.ops)
        remark = ("there are only additions and subtractions ." if not n_mul else
                  f"there {'is' if n_mul == 1 else 'are'} {n_mul} multiplication{'s' * (n_mul > 1)} , so the value can grow .")
    elif fam == "mod":
        remark = f"i reduce after every step so the value stays below {problem.modulus} ."
    elif fam == "list":
        drops = sum(o.startswith("drop") for o in problem.ops)
        remark = ("no operation drops an item , so the list keeps its length ." if not drops else
                  f"{drops} operation{'s' * (drops > 1)} drop{'s' * (drops == 1)} an item , so the list gets shorter .")
    else:
        remark = "each definition uses the one before it , so i go in order ."
    return f"plan : that is {k} steps . {size} {remark}"


def _wrong_work(problem: Problem, step: Step, rng: random.Random) -> str:
    """The step's work with a plausible wrong result (what a back-tracking solver writes first)."""
    delta = rng.choice((-2, -1, 1, 2))
    lhs = step.work.rsplit(" = ", 1)[0]
    if problem.family == "list":
        xs = step.after
        wrong = fmt_list((nudge(xs[0], delta),) + xs[1:])
    else:
        w = nudge(step.after[1] if problem.family == "subst" else step.after, delta)
        wrong = str(w % problem.modulus if problem.family == "mod" else w)  # |delta| <= 2 < m: never v again
    return f"{lhs} = {wrong}"


def step_line(i: int, problem: Problem, step: Step, rng: random.Random, style: Style, allow_extras: bool = True) -> str:
    """``step i : <work> . so the value is now … . still to do : … .``, maybe with a wait or a check.

    The line restates what is left, as v1's traces did: every step needs only the line above it
    (its operation is the first one still to do), never a pointer back into the prompt, which a
    1M-parameter model cannot learn to follow (the first v2 θ₀, without it: 4% in its own form).
    """
    state = fmt_state(problem.family, step.after)
    what = "the list" if problem.family == "list" else "the value"
    body = f"{step.work} ."
    if allow_extras and rng.random() < style.wait:
        body = f"{_wrong_work(problem, step, rng)} . wait , that is not right . {step.work} ."
    line = f"step {i} : {body} so {what} is now {state} ."
    if allow_extras and rng.random() < style.check:
        line += f" check : {step.check} ."
    if step.rest:
        line += f" still to do : {step.rest} ."
    return line


def verify_line(problem: Problem, steps: list[Step]) -> str:
    """The chain of intermediate values restated at the end."""
    start = fmt_state(problem.family, problem.start)
    chain = " , ".join([start] + [fmt_state(problem.family, s.after) for s in steps])
    return f"let me verify the chain : {chain} . every step holds ."


def render(problem: Problem, steps: list[Step], rng: random.Random, style: Style,
           corrupt_at: int | None = None) -> list[str]:
    """The trace's lines (without the answer line). A corrupted step never gets a wait or check
    (those would expose the error), so a wrong-step trace reads as confident as a clean one."""
    lines = [opening(problem, steps), plan(problem)]
    for i, step in enumerate(steps):
        lines.append(step_line(i + 1, problem, step, rng, style, allow_extras=corrupt_at != i))
    if len(steps) >= style.verify_from:
        lines.append(verify_line(problem, steps))
    return lines


def terse_solution(problem: Problem) -> str:
    """The "other form" θ₀ is pretrained on: problem, then every step's work and what is left on one line
    ("7 + 3 = 10 ( left * 2 , - 4 ) , 10 * 2 = 20 ( left - 4 ) , 20 - 4 = 16 . the result is 16 .")."""
    steps = solve(problem)
    works = [s.work + (f" ( left {s.rest} )" if s.rest else "") for s in steps]
    return f"problem : {problem.prompt} . solution : " + " , ".join(works) + f" . the result is {answer_of(problem, steps)} ."


def fact(rng: random.Random) -> str:
    """One elementary fact, written as a trace writes a step's work."""
    family = rng.choice(FAMILIES)
    problem = make_problem(family, rng, 1)
    if family == "list":  # lists of 2..4 items with values up to 19, as later steps see them
        xs = tuple(rng.randint(0, rng.choice((9, 19))) for _ in range(rng.randint(2, 4)))
        op = rng.choice([o for o in LIST_OPS if len(xs) > 2 or not o.startswith("drop")])
        problem = Problem("list", "", xs, (op,))
    elif family == "arith":
        x = rng.randint(0, ARITH_MAX)
        problem = Problem("arith", "", x, (_arith_op(rng, x),))
    return solve(problem)[0].work

