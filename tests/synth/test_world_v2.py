"""World v2's invariants (docs/synth-world-v2.md), checked against an independent re-derivation.

The reference below parses the prompt text and evaluates with Python's own arithmetic, so a bug in
``reasonsift.synth.v2.tasks`` cannot hide in a shared helper.
"""

from __future__ import annotations

import re
import statistics
from collections import Counter

import pytest

from reasonsift.synth.v2 import FAMILIES, MAX_STEPS, SOURCES, generate_eval, generate_pool, pretraining_corpus
from reasonsift.synth.v2.generate import approx_tokens

ANSWER = re.compile(r"^answer: (.*)$", re.MULTILINE)


def reference(prompt: str) -> tuple[str, list[str]]:
    """(answer, intermediate states as written) of a v2 prompt, from its text alone."""
    if prompt.startswith("compute "):
        tokens = prompt[len("compute "):-len(" left to right")].split()
        x, states = int(tokens[0]), []
        for sym, k in zip(tokens[1::2], tokens[2::2]):
            x = eval(f"{x}{sym}{k}")  # noqa: S307 - our own digits and + - *
            states.append(str(x))
        return str(x), states
    if prompt.startswith("mod "):
        m = int(prompt.split()[1])
        tokens = prompt.split(" : ")[1][:-len(" step by step")].split()
        r, states = int(tokens[0]), []
        for sym, k in zip(tokens[1::2], tokens[2::2]):
            r = eval(f"{r}{sym}{k}") % m  # noqa: S307
            states.append(str(r))
        return str(r), states
    if prompt.startswith("list "):
        head, ops = prompt[len("list "):].split(" do ")
        xs, states = [int(v) for v in head.strip("[]").split(",")], []
        for op in ops.split(" , "):
            xs = {"reverse": lambda v: v[::-1], "sort": sorted, "rotate": lambda v: v[1:] + v[:1],
                  "drop first": lambda v: v[1:], "add 1": lambda v: [a + 1 for a in v],
                  "drop max": lambda v: v[:v.index(max(v))] + v[v.index(max(v)) + 1:]}[op](list(xs))
            states.append("[" + ",".join(map(str, xs)) + "]")
        return states[-1], states
    assert prompt.startswith("let ")
    body, target = prompt[len("let "):].split(" find ")
    env: dict[str, int] = {}
    states = []
    for definition in body.split(" , "):
        name, expr = definition.split(" = ")
        env[name] = eval(expr, {}, dict(env))  # noqa: S307 - "b + 2", "c * 2", "d - a"
        if name != "a":
            states.append(str(env[name]))
    return str(env[target]), states


@pytest.fixture(scope="module")
def pool() -> list[dict]:
    return generate_pool(1200, seed=3)


def test_gold_answers_and_clean_traces_match_the_reference(pool: list[dict]) -> None:
    clean = [r for r in pool if not r["low_quality"]]
    assert len(clean) > 900
    for row in pool:
        answer, states = reference(row["prompt"])
        assert row["answer"] == answer, row["prompt"]
        assert len(states) == row["true_difficulty"]
    for row in clean:
        assert ANSWER.findall(row["response"]) == [row["answer"]]
        _, states = reference(row["prompt"])
        # every step states the value it reaches, in order: "so the value is now 16 ." / "so the list is now [..] ."
        written = re.findall(r"so the (?:value|list) is now (\S+) \.", row["response"])
        assert written == states
        assert len(re.findall(r"^step \d+ :", row["response"], re.MULTILINE)) == row["true_difficulty"]


def test_each_step_needs_only_the_line_above(pool: list[dict]) -> None:
    """State-carrying lines: a step's operation is the first one the line above left to do, and the
    value it starts from is the one the line above reached (no pointer back into the prompt)."""
    for row in pool:
        if row["low_quality_kind"] in ("truncated", "loop"):
            continue
        steps = [x for x in row["response"].split("\n") if x.startswith("step ")]
        for above, line in zip(steps, steps[1:]):
            todo = re.search(r"still to do : (.*) \.$", above).group(1).split(" , ")
            value = re.search(r"so the (?:value|list) is now (\S+) \.", above).group(1)
            work = line.split(" : ", 1)[1]
            if row["family"] == "arith":
                assert work.startswith(f"{value} {todo[0]} = ")
            elif row["family"] == "mod":
                sym_k = todo[0]
                assert work.startswith(f"( {value} {sym_k} ) mod ")
            elif row["family"] == "list":
                assert work.startswith(f"{todo[0]} {value} = ")
            else:
                name, expr = todo[0].split(" = ")
                assert work.startswith(f"{name} = {expr} = ") and expr.split()[0] == value
        assert "still to do" not in steps[-1] or row["low_quality_kind"]


def test_every_written_equation_is_true_except_the_wrong_step(pool: list[dict]) -> None:
    """Work and checks ("x op k = v", "( x op k ) mod m = v", "raw mod m = v") hold; a back-tracking
    "wait" line corrects a false one; a wrong-step trace has exactly one false work equation."""
    eq = re.compile(r"(?<![\w)(])(-?\d+) ([-+*/]) (\d+) = (-?\d+)")
    mod = re.compile(r"\( (\d+) ([-+*]) (\d+) \) mod (\d+) = (\d+)")
    mod_check = re.compile(r"check : (-?\d+) mod (\d+) = (\d+)")
    for row in pool:
        if row["low_quality_kind"] == "truncated" or row["family"] == "list":
            continue  # (a truncated trace may end inside a "wait" line; list work is checked by the reference)
        false = 0
        for line in row["response"].split("\n"):
            if row["family"] == "mod":
                truths = [eval(f"{a}{op}{b}") % int(m) == int(v) for a, op, b, m, v in mod.findall(line)]  # noqa: S307
                truths += [int(r) % int(m) == int(v) for r, m, v in mod_check.findall(line)]
            else:
                truths = [int(eval(f"{a}{op}{b}")) == int(v) for a, op, b, v in eq.findall(line)]  # noqa: S307
            if "wait , that is not right" in line:  # the first is the slip, the others are true
                assert truths[0] is False and all(truths[1:]), line
            else:
                false += truths.count(False)
        assert false == (1 if row["low_quality_kind"] == "wrong_step" else 0), row["response"]


def test_low_quality_kinds(pool: list[dict]) -> None:
    kinds = Counter(r["low_quality_kind"] for r in pool if r["low_quality"])
    assert set(kinds) == {"wrong_step", "truncated", "loop"} and min(kinds.values()) > 15
    for row in pool:
        found = ANSWER.findall(row["response"])
        if row["low_quality_kind"] == "wrong_step":  # a confident trace that reaches a wrong answer
            assert len(found) == 1 and found[0] != row["answer"]
            written = re.findall(r"so the (?:value|list) is now (\S+) \.", row["response"])
            truth = reference(row["prompt"])[1]
            bad = [i for i, (w, t) in enumerate(zip(written, truth)) if w != t]
            assert bad and bad[-1] == len(truth) - 1  # wrong from some step on, through the last one
            assert written[-1] == found[0]  # and the answer line follows the wrong value
        elif row["low_quality_kind"] == "truncated":  # cut before its answer line, mid-trace
            assert not found and len(row["response"]) > 0
        elif row["low_quality_kind"] == "loop":  # the same lines over and over, never an answer
            lines = row["response"].split("\n")
            top, count = Counter(lines).most_common(1)[0]
            assert not found and count >= 3 and top.startswith(("step", "wait"))
            assert approx_tokens(row["response"]) >= 600


def test_sources_shares_difficulty_and_quality(pool: list[dict]) -> None:
    by_source = Counter(r["source"] for r in pool)
    assert set(by_source) == set(SOURCES)
    for name, src in SOURCES.items():
        rows = [r for r in pool if r["source"] == name]
        assert abs(len(rows) / len(pool) - src.share) < 0.05, name
        assert all(src.steps[0] <= r["true_difficulty"] <= src.steps[1] for r in rows), name
        assert {r["low_quality_kind"] for r in rows if r["low_quality"]} <= set(src.kinds)
    low = {name: sum(r["low_quality"] for r in pool if r["source"] == name) / by_source[name] for name in SOURCES}
    assert low["forum"] > 0.2 > 0.1 > low["textbook"]  # sources differ in quality as M23K's do
    assert Counter(r["family"] for r in pool).keys() == set(FAMILIES)


def test_traces_are_long_and_the_windows_mean_something(pool: list[dict]) -> None:
    lengths = [approx_tokens(r["response"]) for r in pool]
    assert statistics.median(lengths) >= 300  # the 100-token window is a prefix of at most a third
    assert sum(n > 1000 for n in lengths) >= 0.02 * len(pool)  # the 1,000-token window cuts the longest
    clean = [r for r in pool if not r["low_quality"] and r["source"] == "olympiad"]
    assert max(approx_tokens(r["response"]) for r in clean) > 1000  # clean traces too, not only loops
    # the opening and plan depend on the problem: its operations and its size
    row = next(r for r in pool if r["family"] == "arith" and r["true_difficulty"] >= 10 and not r["low_quality"])
    opening, plan = row["response"].split("\n")[:2]
    assert f"apply {row['true_difficulty']} operations" in opening and "this is long" in plan


def test_word_tokenizer_one_token_per_piece_no_unknowns_exact_round_trip() -> None:
    from reasonsift.synth.world import SHIPPED_V2

    if not (SHIPPED_V2 / "tokenizer.json").exists():
        pytest.skip("θ₀ v2 not shipped in this checkout")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(SHIPPED_V2))
    for row in generate_pool(300, seed=12345):  # a seed the vocabulary was not built from
        text = row["prompt"] + "\n" + row["response"]
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.unk_token_id not in ids
        assert tok.decode(ids) == text
        assert len(ids) == approx_tokens(text)


def test_determinism_and_row_independence() -> None:
    assert generate_pool(50, 4) == generate_pool(50, 4)
    assert generate_pool(80, 4)[:50] == generate_pool(50, 4)
    assert generate_pool(50, 4) != generate_pool(50, 5)
    assert pretraining_corpus(100, 0) == pretraining_corpus(100, 0)


def test_eval_covers_every_cell_and_is_disjoint_from_the_pool(pool: list[dict]) -> None:
    rows = generate_eval(2, seed=4, exclude_prompts={r["prompt"] for r in pool})
    cells = Counter((r["family"], r["true_difficulty"]) for r in rows)
    assert len(cells) == len(FAMILIES) * MAX_STEPS and set(cells.values()) == {2}
    assert not {r["question"] for r in rows} & {r["prompt"] for r in pool}
    for r in rows:
        assert reference(r["question"])[0] == r["answer"]


def test_pretraining_corpus_holds_the_capability_but_not_the_long_cot_form() -> None:
    """At ``long_share=0`` (builds 1-5; build 6 adds plain long traces, tested below) the corpus is facts
    and terse solutions only."""
    corpus = pretraining_corpus(2000, 0)
    solutions = [x for x in corpus if x.startswith("problem : ")]
    assert 0.6 < len(solutions) / len(corpus) < 0.8
    assert max(len(reference(x[len("problem : "):x.index(" . solution :")])[1]) for x in solutions) == MAX_STEPS
    for x in solutions:  # the terse solution reaches the reference answer
        prompt = x[len("problem : "):x.index(" . solution :")]
        assert x.endswith(f"the result is {reference(prompt)[0]} .")
    text = "\n".join(corpus)
    for form in ("step 1 :", "answer:", "plan :", "check :", "wait ,", "let me verify", "still to do"):
        assert form not in text


def test_pretraining_corpus_long_share_adds_clean_plain_long_traces() -> None:
    """Change 8's corpus (the shipped θ₀'s since build 6): a tenth of the items are clean long-CoT
    traces without a chat turn: the bare problem, the trace, the right answer line, never a loop or
    truncation."""
    corpus = pretraining_corpus(2000, 0, long_share=0.1)
    long = [x for x in corpus if "\nanswer: " in x]
    assert 0.07 < len(long) / len(corpus) < 0.13
    for x in long:
        prompt, *lines = x.split("\n")
        assert lines[1].startswith("plan : ") and lines[-1] == f"answer: {reference(prompt)[0]}"
        assert "let me redo" not in x and "<|" not in x
    rest = [x for x in corpus if x not in long]
    assert 0.6 < sum(x.startswith("problem : ") for x in rest) / len(rest) < 0.8  # terse solutions as before


def test_shipped_v2_base_model_matches_its_recipe() -> None:
    """θ₀ v2 ships with the package and its hash is the default recipe's (scripts/build_synth_base.py
    --world v2 rebuilds it; bump CORPUS_VERSION_V2 when the world's text changes)."""
    from reasonsift.synth.world import SHIPPED_V2, BaseRecipeV2, build_base_model, recipe_hash, shipped_hash

    assert shipped_hash(SHIPPED_V2) == recipe_hash(BaseRecipeV2())
    assert build_base_model(BaseRecipeV2(), progress=False) == SHIPPED_V2
    # The vocabulary comes from the world's text: a change to tasks.py/generate.py that adds a word
    # and forgot CORPUS_VERSION_V2 (so the shipped θ₀ is stale) shows up here.
    from transformers import AutoTokenizer

    from reasonsift.synth.v2 import world_tokenizer

    assert AutoTokenizer.from_pretrained(str(SHIPPED_V2)).get_vocab() == world_tokenizer().get_vocab()


def test_shipped_theta0_signals_on_a_v2_pool(tmp_path) -> None:
    """What TEMP's difficulty sees on the shipped θ₀ v2, as measured (BENCHMARKS.md, world v2):
    calibration finds θ_rnd in the paper's band. On builds 3 and 5 (no long form in pretraining) θ₀'s
    100-token loss *fell* with the number of steps (ρ −0.56, −0.49: a long trace's first 100 tokens are
    mostly restated operations, cheap to copy; a short one's hold its unfamiliar computation). Build 6
    has seen clean long traces (change 8) and that anti-correlation is gone (−0.12 here, −0.15 on the
    benchmark's pool), but the early window is still no difficulty signal under noise (θ_rnd: −0.11 here).
    If a change to the world moves these, this test changes with BENCHMARKS.md, not loosened quietly."""
    import pyarrow.parquet as pq
    from scipy.stats import spearmanr

    from reasonsift.api import score
    from reasonsift.synth.generate import write_jsonl
    from reasonsift.synth.world import SHIPPED_V2

    rows = generate_pool(160, 21)
    report = score(str(write_jsonl(rows, tmp_path / "pool.jsonl")), model=str(SHIPPED_V2), run=tmp_path / "run",
                   overrides=["score.direction=isotropic", "score.num_isotropic=2", "score.short_tokens=100",
                              "score.long_tokens=100", "score.calibration_examples=32"], progress=False)
    assert report["theta_rnd"]["in_range"] and 2.0 <= report["theta_rnd"]["ratio"] <= 3.0
    scores = pq.read_table(tmp_path / "run" / "scores.parquet").to_pandas()
    steps = {r["id"]: r["true_difficulty"] for r in rows}
    k = [steps[i] for i in scores["id"]]
    assert -0.3 < spearmanr(scores["base_loss_100"], k).statistic < 0.3  # measured −0.12 (build 6)
    assert abs(spearmanr(scores["difficulty"], k).statistic) < 0.3  # measured −0.11 (build 6): noise blurs it


def test_shipped_theta0_copies_from_its_context() -> None:
    """θ₀ v2's copy phase (docs/synth-world-v2.md, changes 4-6) gives it induction heads: a repeated
    sequence of random numbers costs far less the second time (measured 5.44 → 2.46 nats per token on
    build 5, 6.55 → 2.28 on build 6; the θ₀ without a copy phase: 13.67 → 13.51). Without them it
    mis-copies a problem's operations."""
    from reasonsift.synth.probes import probe_copying
    from reasonsift.synth.world import SHIPPED_V2

    copying = probe_copying(SHIPPED_V2)
    assert copying["repeat_nll"] < copying["first_nll"] - 2.0, copying
