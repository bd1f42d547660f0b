"""The synthetic world against an independent reference (tests/synth/reference.py)."""

from __future__ import annotations

import json
import random
import re
from collections import Counter

import pytest

from reasonsift.synth import (
    ALL_FAMILIES, CHARSET, check_answer, extract_answer, generate_eval, generate_pool, pretraining_corpus, write_jsonl,
)
from reasonsift.synth import tasks
from tests.synth.reference import _ref_list_op, replay

MAX_STEPS = 6


@pytest.fixture(scope="module")
def pool() -> list[dict]:
    return generate_pool(1500, seed=1, low_quality_fraction=0.3)


def _steps(row: dict) -> list[str]:
    return row["response"].split("\n")[:-1]  # all lines but the answer line


def test_gold_answers_match_reference_solver(pool: list[dict]) -> None:
    for row in pool:
        _, answer, _ = replay(row["source"], row["prompt"])
        assert row["answer"] == answer, row
        if row["source"] == "carry":  # and a second, wholly different route for long addition
            a, b = re.findall(r"\d+", row["prompt"])
            assert row["answer"] == str(int(a) + int(b))


def test_clean_traces_are_exactly_the_reference_trace(pool: list[dict]) -> None:
    clean = [r for r in pool if not r["low_quality"]]
    assert len(clean) > 900
    for row in clean:
        lines, answer, _ = replay(row["source"], row["prompt"])
        assert row["response"] == "\n".join(lines + [f"answer: {answer}"])
        assert check_answer(row["response"], row["answer"])
        assert len(_steps(row)) == row["true_difficulty"]  # step lines == steps, for every family


def test_wrong_step_traces_have_one_wrong_step_that_propagates_to_a_wrong_answer(pool: list[dict]) -> None:
    wrong = [r for r in pool if r["low_quality_kind"] == "wrong_step"]
    assert len(wrong) > 150 and {r["source"] for r in wrong} == set(ALL_FAMILIES)
    for row in wrong:
        shown = _steps(row)
        assert len(shown) == row["true_difficulty"]
        _, propagated, n_wrong = replay(row["source"], row["prompt"], shown)
        assert n_wrong == 1, row  # exactly one step disagrees with its own inputs
        assert extract_answer(row["response"]) == propagated  # the answer follows the wrong value...
        assert not check_answer(row["response"], row["answer"])  # ...so it is actually wrong


def test_wrong_step_always_changes_the_answer_even_for_one_step() -> None:
    for family in ALL_FAMILIES:
        for steps in (1, 2, MAX_STEPS):
            for s in range(40):
                prompt, lines, wrong, gold = tasks.make_wrong_step(family, random.Random(s), steps)
                assert wrong != gold and len(lines) == steps
                assert gold == replay(family, prompt)[1]


def test_truncated_traces_are_strict_prefixes_without_answer(pool: list[dict]) -> None:
    cut = [r for r in pool if r["low_quality_kind"] == "truncated"]
    assert len(cut) > 150
    for row in cut:
        full = "\n".join(replay(row["source"], row["prompt"])[0])
        assert row["response"] and "answer" not in row["response"]
        assert full.startswith(row["response"]) and len(row["response"]) < len(full)
        assert extract_answer(row["response"]) is None and not check_answer(row["response"], row["answer"])


def test_difficulty_knob_sets_step_lines_for_every_family() -> None:
    for family in ALL_FAMILIES:
        for steps in range(1, 9):
            prompt, lines, answer = tasks.make_task(family, random.Random(steps), steps)
            assert len(lines) == steps and "\n" not in prompt
            assert (lines, answer) == replay(family, prompt)[:2]


def test_seeded_determinism_and_row_independence() -> None:
    a = generate_pool(200, seed=7)
    assert a == generate_pool(200, seed=7)
    assert a[:50] == generate_pool(50, seed=7)  # row i depends on (seed, i) only
    other = generate_pool(200, seed=8)
    assert sum(x["prompt"] == y["prompt"] for x, y in zip(a, other)) < 20
    assert len({r["id"] for r in a}) == 200 and all(r["id"].endswith(f"-7-{i}") for i, r in enumerate(a))
    # quality comes from its own stream: the problems do not move when the fraction changes
    assert [r["prompt"] for r in generate_pool(200, 7, low_quality_fraction=0.0)] == [r["prompt"] for r in a]
    assert generate_eval(3, seed=7) == generate_eval(3, seed=7) != generate_eval(3, seed=8)


def test_low_quality_fraction_and_uniform_sampling() -> None:
    rows = generate_pool(3000, seed=3, low_quality_fraction=0.2)
    kinds = Counter(r["low_quality_kind"] for r in rows)
    assert abs((kinds["wrong_step"] + kinds["truncated"]) / 3000 - 0.2) < 0.03
    assert abs(kinds["wrong_step"] - kinds["truncated"]) < 0.25 * (3000 * 0.2)
    assert all(r["low_quality"] == bool(r["low_quality_kind"]) for r in rows)
    by_family, by_steps = Counter(r["source"] for r in rows), Counter(r["true_difficulty"] for r in rows)
    assert set(by_family) == set(ALL_FAMILIES) and set(by_steps) == set(range(1, MAX_STEPS + 1))
    assert all(abs(c - 600) < 120 for c in by_family.values()) and all(abs(c - 500) < 100 for c in by_steps.values())
    assert not any(r["low_quality"] for r in generate_pool(200, 3, low_quality_fraction=0.0))
    assert all(r["low_quality"] for r in generate_pool(200, 3, low_quality_fraction=1.0))


def test_rows_keys_and_families_subset() -> None:
    rows = generate_pool(100, seed=0, families=("mod", "list"), max_steps=3)
    assert {r["source"] for r in rows} == {"mod", "list"} and max(r["true_difficulty"] for r in rows) <= 3
    assert set(rows[0]) == {"id", "prompt", "response", "answer", "source", "domain", "true_difficulty",
                            "low_quality", "low_quality_kind"}
    assert all(r["domain"] == "synth" for r in rows)
    with pytest.raises(ValueError, match="families"):
        generate_pool(5, 0, families=("calculus",))
    with pytest.raises(ValueError, match="max_steps"):
        generate_pool(5, 0, max_steps=0)


def test_charset_and_lengths(pool: list[dict]) -> None:
    allowed = set(CHARSET)
    texts = [r["prompt"] for r in pool] + [r["response"] for r in pool]
    texts += [r["question"] + r["answer"] for r in generate_eval(2, seed=1)] + pretraining_corpus(2000, seed=1)
    assert all(set(t) <= allowed for t in texts)
    assert all("\n" not in r["prompt"] and len(r["prompt"]) <= 120 for r in pool)
    assert max(len(r["response"]) for r in pool) <= 450  # a 6-step list trace restates lists: the longest


def test_eval_set_covers_every_cell_and_is_disjoint_from_pool(pool: list[dict]) -> None:
    pool_prompts = {r["prompt"] for r in pool}
    rows = generate_eval(5, seed=1, exclude_prompts=pool_prompts)
    cells = Counter((r["source"], r["true_difficulty"]) for r in rows)
    assert set(cells) == {(f, d) for f in ALL_FAMILIES for d in range(1, MAX_STEPS + 1)}
    assert all(n == 5 for n in cells.values())
    questions = [r["question"] for r in rows]
    assert len(set(questions)) == len(questions) and not set(questions) & pool_prompts
    assert len({r["id"] for r in rows}) == len(rows)
    for row in rows:
        assert set(row) == {"id", "question", "answer", "source", "true_difficulty"}
        assert row["answer"] == replay(row["source"], row["question"])[1]


def test_eval_cell_with_exhausted_problem_space_is_short_not_endless() -> None:
    every_one_digit_add = {f"add {a}+{b} digit by digit" for a in range(10) for b in range(10)}
    assert generate_eval(3, seed=0, families=("carry",), max_steps=1, exclude_prompts=every_one_digit_add) == []
    rows = generate_eval(3, seed=0, families=("carry",), max_steps=2, exclude_prompts=every_one_digit_add)
    assert [r["true_difficulty"] for r in rows] == [2, 2, 2]  # the empty cell does not stop the others


def _fact_is_true(line: str) -> bool:
    if m := re.fullmatch(r"(\w+(?: \w+)?) (\[[\d,]+\])=(\[[\d,]*\])", line):  # list facts
        return _ref_list_op(json.loads(m[2]), m[1]) == json.loads(m[3])
    if m := re.fullmatch(r"(\d)\+(\d)\+(\d)=(\d+) write (\d) carry (\d)", line):
        s = int(m[1]) + int(m[2]) + int(m[3])
        return (s, s % 10, s // 10) == (int(m[4]), int(m[5]), int(m[6]))
    if m := re.fullmatch(r"\((\d+)([+*-]\d+)\)%(\d+)=(\d+)", line):
        return eval(m[1] + m[2]) % int(m[3]) == int(m[4])
    if m := re.fullmatch(r"(?:[a-z]=)?(\d+)([+*-]\d+)=(\d+)", line):  # "7+5=12", subst's "b=7+5=12"
        return eval(m[1] + m[2]) == int(m[3])
    return False


def test_pretraining_corpus_is_true_facts_and_first_steps_only() -> None:
    """Facts, whole one-step problems and first step lines of longer ones: never a second step."""
    items = pretraining_corpus(3000, seed=2)
    assert len(items) == 3000 and items == pretraining_corpus(3000, seed=2) != pretraining_corpus(3000, seed=3)
    problems = [i for i in items if "\n" in i]
    facts = [i for i in items if "\n" not in i]
    assert all(_fact_is_true(f) for f in facts)
    kinds = Counter("%" if "%" in f else "w" if "write" in f else "[" if "[" in f else f[0].isalpha() for f in facts)
    assert len(kinds) == 5 and min(kinds.values()) > 150  # every family's facts
    assert abs(len(problems) / 3000 - 0.5) < 0.05 and not any("\n" in i for i in pretraining_corpus(50, 2, 0.0))
    families, steps = Counter(), Counter()
    for item in problems:  # a statement and its first step line; whole (with the answer) when one step
        prompt, *lines = item.split("\n")
        family = next(f for f, word in (("arith", "compute"), ("carry", "add"), ("list", "list"), ("mod", "mod"),
                                        ("subst", "let")) if prompt.startswith(word + " "))
        expected, answer, _ = replay(family, prompt)
        families[family] += 1
        steps[len(expected)] += 1
        if len(expected) == 1:
            assert lines == [expected[0], f"answer: {answer}"]
        else:
            assert lines == [expected[0]]
    assert set(families) == set(ALL_FAMILIES) and set(steps) == set(range(1, MAX_STEPS + 1))
    for item in items:  # never a second step line or a chat marker
        assert "<|" not in item and item.count(";") <= 1
        assert "answer" not in item or item.count("\n") == 2


def test_each_step_line_needs_only_the_line_before(pool: list[dict]) -> None:
    """State-carrying traces: a step's operands are the previous line's result and its rest's head."""
    for row in (r for r in pool if not r["low_quality"] and r["true_difficulty"] > 1):
        lines = _steps(row)
        for prev, line in zip(lines, lines[1:]):
            work, rest = prev.split("; ")
            result = work.rsplit("=", 1)[1] if row["source"] != "carry" else None
            nxt = line.split("; ")[0]
            if row["source"] == "arith":  # the rest is the remaining expression: "20 *2 -4"
                value, head = rest.split(" ")[:2]
                assert value == result and nxt.startswith(f"{value}{head}=")
            elif row["source"] == "mod":  # "mod 7: 5 +5 *2"
                m = re.match(r"mod (\d+): (\d+) (\S+)", rest)
                assert m[2] == result and nxt.startswith(f"({m[2]}{m[3]})%{m[1]}=")
            elif row["source"] == "list":  # "[2,5,1] do sort, rotate"
                xs, ops = rest.split(" do ")
                assert xs == result and nxt.startswith(f"{ops.split(', ')[0]} {xs}=")
            elif row["source"] == "subst":
                assert nxt.startswith(rest.split(", ")[0] + "=")  # the next definition, operands substituted
            else:  # carry: the next column is the last digits of the remaining numbers, plus the carry
                a, b = rest.split("+")
                carry = re.search(r"carry (\d)", work)[1]
                assert nxt.startswith(f"{a[-1]}+{b[-1]}+{carry}=")
                assert re.search(r"so far (\d+)$", nxt)[1].endswith(re.search(r"so far (\d+)$", work)[1])
        assert ";" not in lines[-1]  # the last step has nothing left to do ...
        assert row["response"].endswith(f"answer: {row['answer']}")  # ... and the answer is read off it


def test_check_answer_and_write_jsonl(tmp_path) -> None:
    assert check_answer("7+3=10\nanswer: 10", "10") and check_answer("answer:  [1,2] \n", " [1,2]")
    assert not check_answer("7+3=10\nanswer: 11", "10") and not check_answer("7+3=10", "10")
    assert not check_answer("the answer: 10", "10")  # the answer must start its own line
    assert extract_answer("answer: 4\nanswer: 5") == "4"  # the first answer line counts
    rows = generate_pool(5, seed=0)
    path = write_jsonl(rows, tmp_path / "sub" / "pool.jsonl")
    assert [json.loads(line) for line in path.read_text().splitlines()] == rows


def test_shipped_base_model_matches_the_default_recipe() -> None:
    """The θ₀ in the package is the one scripts/build_synth_base.py builds from today's recipe and world.

    Fails when tasks.py, the pretraining corpus or BaseRecipe change without a rebuild (bump
    CORPUS_VERSION for text changes, then run the script), so the demo never trains on a stale θ₀.
    """
    from reasonsift.synth.world import RECIPE_FILE, SHIPPED, BaseRecipe, build_base_model, recipe_hash

    info = json.loads((SHIPPED / RECIPE_FILE).read_text())
    assert info["hash"] == recipe_hash(BaseRecipe()), "rebuild θ₀: .venv/bin/python scripts/build_synth_base.py"
    assert build_base_model(BaseRecipe(), progress=False) == SHIPPED
    size = sum(f.stat().st_size for f in SHIPPED.iterdir())
    assert size < 20 * 2**20
    # it knows the world's one-step facts (measured on held-out items when it was built)
    assert min(info["probe"].values()) > 0.3  # chance is a few percent: every family is learned
