"""An independent reference for the synthetic world: re-derives every trace from its prompt alone.

Written separately from ``reasonsift.synth.tasks`` (parses the prompt text, evaluates with Python's
own arithmetic), so a bug in the generator cannot hide in a shared helper. ``replay`` also checks a
given trace: each step is recomputed from the value the trace *displayed* on the line before, so a
single wrong step counts once and the error's propagation is checked, not counted again.
"""

from __future__ import annotations

import json
import re
from collections import deque
from typing import Any, Callable


def _list_str(xs: list[int]) -> str:
    return json.dumps(xs).replace(" ", "")


def _ref_list_op(xs: list[int], op: str) -> list[int]:
    xs = list(xs)
    if op == "reverse":
        xs.reverse()
    elif op == "sort":
        xs.sort()
    elif op == "rotate":
        d = deque(xs)
        d.rotate(-1)
        xs = list(d)
    elif op == "drop max":
        xs.remove(max(xs))  # removes the first occurrence, as documented
    elif op == "drop first":
        del xs[0]
    elif op == "add 1":
        xs = [x + 1 for x in xs]
    else:
        raise ValueError(op)
    return xs


def _family_spec(family: str, prompt: str) -> tuple[Any, list, Callable, Callable, Callable]:
    """(start, ops, step(state, op) -> (line, state), parse(state, line) -> state, render(state))."""
    if family == "arith":
        m = re.fullmatch(r"compute (\d+) (.*) left to right", prompt)
        step = lambda x, t: (f"{x}{t}={eval(f'({x}){t}')}", eval(f"({x}){t}"))  # noqa: E731
        return int(m[1]), m[2].split(), step, lambda _, line: int(line.split("=")[-1]), str
    if family == "mod":
        m = re.fullmatch(r"mod (\d+): (\d+) (.*) step by step", prompt)
        mod = int(m[1])
        step = lambda r, t: (f"({r}{t})%{mod}={eval(f'({r}){t}') % mod}", eval(f"({r}){t}") % mod)  # noqa: E731
        return int(m[2]), m[3].split(), step, lambda _, line: int(line.split("=")[-1]), str
    if family == "carry":
        m = re.fullmatch(r"add (\d+)\+(\d+) digit by digit", prompt)
        a, b = m[1], m[2]
        assert len(a) == len(b)

        def step(state: tuple[int, str], i: int) -> tuple[str, tuple[int, str]]:
            c, digits = state
            s = int(a[-1 - i]) + int(b[-1 - i]) + c
            return f"{a[-1 - i]}+{b[-1 - i]}+{c}={s} write {s % 10} carry {s // 10}", (s // 10, f"{s % 10}{digits}")

        parse = lambda state, line: (int(line.split()[-1]), line.split()[2] + state[1])  # noqa: E731
        return (0, ""), list(range(len(a))), step, parse, lambda st: str(int(f"{st[0]}{st[1]}"))
    if family == "list":
        m = re.fullmatch(r"list (\[[\d,]+\]) do (.*)", prompt)

        def step(xs: list[int], op: str) -> tuple[str, list[int]]:
            new = _ref_list_op(xs, op)
            return f"{op} {_list_str(new)}", new

        return json.loads(m[1]), m[2].split(", "), step, lambda _, line: json.loads(line[line.index("["):]), _list_str
    if family == "subst":
        m = re.fullmatch(r"let a=(\d+), (.*) find ([a-z])", prompt)
        ops = [d.split("=") for d in m[2].split(", ")]  # [["b", "a+2"], ...]

        def step(env: dict, op: list[str]) -> tuple[str, dict]:
            name, expr = op
            x, sym, rest = env[expr[0]], expr[1], expr[2:]
            y = env[rest] if rest.isalpha() else int(rest)
            v = eval(f"({x}){sym}({y})")
            return f"{name}={x}{sym}{y}={v}", {**env, name: v}

        parse = lambda env, line: {**env, line.split("=")[0]: int(line.split("=")[-1])}  # noqa: E731
        return {"a": int(m[1])}, ops, step, parse, lambda env: str(env[m[3]])
    raise ValueError(family)


def replay(family: str, prompt: str, shown: list[str] | None = None) -> tuple[list[str], str, int]:
    """(expected step lines, final answer, number of wrong shown lines).

    Without ``shown`` this is the reference solution. With it, each step continues from the shown
    line's value, so the answer is what the shown trace's values lead to.
    """
    state, ops, step, parse, render = _family_spec(family, prompt)
    lines, wrong = [], 0
    for i, op in enumerate(ops):
        line, new = step(state, op)
        lines.append(line)
        if shown is not None:
            wrong += shown[i] != line
            new = parse(state, shown[i])  # continue from what the trace displayed
        state = new
    return lines, render(state), wrong
