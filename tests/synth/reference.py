"""An independent reference for the synthetic world: re-derives every trace from its prompt alone.

Written separately from ``reasonsift.synth.tasks`` (parses the prompt text, evaluates with Python's
own arithmetic), so a bug in the generator cannot hide in a shared helper. ``replay`` also checks a
given trace: each step is recomputed from the value the trace *displayed* on the line before, so a
single wrong step counts once and the error's propagation is checked, not counted again.

A step line is ``<work>; <rest>`` (the last one: ``<work>``), where the rest restates what is still
to do, for subst with every known value substituted.
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


def _last_int(work: str) -> int:
    return int(work.rsplit("=", 1)[1])


Spec = tuple[Any, list, Callable, Callable, Callable, Callable]


def _family_spec(family: str, prompt: str) -> Spec:
    """(start, ops, work(state, op) -> (text, state), rest(state, later ops) -> text,
    parse(state, shown work) -> state, render(final state) -> answer)."""
    if family == "arith":
        m = re.fullmatch(r"compute (\d+) (.*) left to right", prompt)

        def work(x: int, t: str) -> tuple[str, int]:
            v = eval(f"({x}){t}")
            return f"{x}{t}={v}", v

        rest = lambda x, later: f"{x} " + " ".join(later)  # noqa: E731
        return int(m[1]), m[2].split(), work, rest, lambda _, w: _last_int(w), str
    if family == "mod":
        m = re.fullmatch(r"mod (\d+): (\d+) (.*) step by step", prompt)
        mod = int(m[1])

        def work(r: int, t: str) -> tuple[str, int]:
            v = eval(f"({r}){t}") % mod
            return f"({r}{t})%{mod}={v}", v

        rest = lambda r, later: f"mod {mod}: {r} " + " ".join(later)  # noqa: E731
        return int(m[2]), m[3].split(), work, rest, lambda _, w: _last_int(w), str
    if family == "carry":
        m = re.fullmatch(r"add (\d+)\+(\d+) digit by digit", prompt)
        a, b = m[1], m[2]
        assert len(a) == len(b)

        def work(state: tuple[int, str], i: int) -> tuple[str, tuple[int, str]]:
            c, digits = state
            s = int(a[-1 - i]) + int(b[-1 - i]) + c
            digits = f"{s % 10}{digits}"
            return f"{a[-1 - i]}+{b[-1 - i]}+{c}={s} write {s % 10} carry {s // 10} so far {digits}", (s // 10, digits)

        def rest(_: Any, later: list[int]) -> str:
            n = len(later)  # the n most significant digits are still to add
            return f"{a[:n]}+{b[:n]}"

        def parse(_: Any, w: str) -> tuple[int, str]:
            m2 = re.fullmatch(r"\d\+\d\+\d=\d+ write \d carry (\d) so far (\d+)", w)
            return int(m2[1]), m2[2]

        return (0, ""), list(range(len(a))), work, rest, parse, lambda st: str(int(f"{st[0]}{st[1]}"))
    if family == "list":
        m = re.fullmatch(r"list (\[[\d,]+\]) do (.*)", prompt)

        def work(xs: list[int], op: str) -> tuple[str, list[int]]:
            new = _ref_list_op(xs, op)
            return f"{op} {_list_str(xs)}={_list_str(new)}", new

        parse = lambda _, w: json.loads(w.rsplit("=", 1)[1])  # noqa: E731
        rest = lambda xs, later: f"{_list_str(xs)} do " + ", ".join(later)  # noqa: E731
        return json.loads(m[1]), m[2].split(", "), work, rest, parse, _list_str
    if family == "subst":
        m = re.fullmatch(r"let a=(\d+), (.*) find ([a-z])", prompt)
        ops = [d.split("=") for d in m[2].split(", ")]  # [["b", "a+2"], ...]

        def known(env: dict, expr: str) -> str:  # every variable with a value replaced by it
            return re.sub(r"[a-z]", lambda v: str(env.get(v[0], v[0])), expr)

        def work(env: dict, op: list[str]) -> tuple[str, dict]:
            name, expr = op
            x, sym, rest = env[expr[0]], expr[1], expr[2:]
            y = env[rest] if rest.isalpha() else int(rest)
            v = eval(f"({x}){sym}({y})")
            return f"{name}={x}{sym}{y}={v}", {**env, name: v}

        rest = lambda env, later: ", ".join(f"{n}={known(env, e)}" for n, e in later)  # noqa: E731
        parse = lambda env, w: {**env, w.split("=")[0]: _last_int(w)}  # noqa: E731
        return {"a": int(m[1])}, ops, work, rest, parse, lambda env: str(env[m[3]])
    raise ValueError(family)


def replay(family: str, prompt: str, shown: list[str] | None = None) -> tuple[list[str], str, int]:
    """(expected step lines, final answer, number of wrong shown lines).

    Without ``shown`` this is the reference solution. With it, each step continues from the shown
    line's value, so the answer is what the shown trace's values lead to.
    """
    state, ops, work, rest, parse, render = _family_spec(family, prompt)
    suffix = lambda st, i: f"; {rest(st, ops[i + 1:])}" if i + 1 < len(ops) else ""  # noqa: E731
    lines, wrong = [], 0
    for i, op in enumerate(ops):
        text, new = work(state, op)
        lines.append(text + suffix(new, i))
        if shown is not None:
            shown_work = shown[i].split("; ")[0]
            new = parse(state, shown_work)  # continue from what the trace displayed
            wrong += shown_work != text  # the step itself is wrong, or ...
            wrong += shown[i] != shown_work + suffix(new, i)  # ... its rest does not follow its own result
        state = new
    return lines, render(state), wrong
