"""Reading pools: schema detection, every input format, verbatim rows, ids, and bad input."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reasonsift.data.formats import iter_rows
from reasonsift.data.load import iter_examples, parse_field_overrides
from reasonsift.data.records import DataError, Example
from tests.conftest import SHARED_DATA, shared_data_or_skip

SRC = str(Path(__file__).resolve().parents[2] / "src")
MATH = SHARED_DATA / "math" / "train.jsonl"


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def examples(source: Path | str, **kwargs) -> list[Example]:
    return [ex for _, ex, _ in iter_examples(source, **kwargs)]


def one(row: dict, tmp_path: Path, **kwargs) -> Example:
    (ex,) = examples(write_jsonl(tmp_path / "pool.jsonl", [row]), **kwargs)
    return ex


def real_rows(path: Path, n: int) -> list[dict]:
    with open(shared_data_or_skip(path), encoding="utf-8") as f:
        return [json.loads(next(f)) for _ in range(n)]


# --- schemas -----------------------------------------------------------------------------------


@pytest.mark.parametrize("prompt_key,reasoning_key,answer_key", [
    ("prompt", "reasoning", "distilled_answer_string"),
    ("question", "thinking", "answer"),
    ("problem", "thinking_trajectories", "solution"),
])
def test_reasoning_plus_answer_schemas(tmp_path, prompt_key, reasoning_key, answer_key):
    row = {prompt_key: "What is 2+3?", reasoning_key: "Add them: 2+3=5.", answer_key: "5"}
    ex = one(row, tmp_path)
    assert (ex.prompt, ex.response, ex.answer) == ("What is 2+3?", "Add them: 2+3=5.\n\n5", "5")
    assert ex.system is None and ex.row_index == 0


def test_m23k_row_keeps_source(tmp_path):
    row = {"prompt": "A 45-year-old man presents with chest pain...", "reasoning": "Consider ACS first.",
           "distilled_answer_string": "Aspirin", "source": "medqa"}
    ex = one(row, tmp_path)
    assert ex.response == "Consider ACS first.\n\nAspirin"
    assert (ex.answer, ex.source, ex.domain) == ("Aspirin", "medqa", "default")


def test_reasoning_as_list_of_strings(tmp_path):
    # s1K: thinking_trajectories is a list of strings; attempt beats the reference solution.
    row = {"question": "q?", "solution": "reference", "thinking_trajectories": ["step one", "step two"],
           "attempt": "final"}
    ex = one(row, tmp_path)
    assert ex.response == "step one\nstep two\n\nfinal"
    assert ex.answer == "final"


def test_chat_messages_with_system(tmp_path):
    row = {"messages": [{"role": "system", "content": "Be brief."},
                        {"role": "user", "content": "Half of 1?"},
                        {"role": "assistant", "content": "It is \\boxed{\\frac{1}{2}}."}]}
    ex = one(row, tmp_path)
    assert (ex.system, ex.prompt, ex.response) == ("Be brief.", "Half of 1?", "It is \\boxed{\\frac{1}{2}}.")
    assert ex.answer == "\\frac{1}{2}"


def test_chat_multi_turn_takes_last_user_and_last_assistant(tmp_path):
    row = {"messages": [{"role": "user", "content": "first question"},
                        {"role": "assistant", "content": "first answer"},
                        {"role": "user", "content": "second question"},
                        {"role": "assistant", "content": "second answer"}]}
    ex = one(row, tmp_path)
    assert (ex.prompt, ex.response, ex.system) == ("second question", "second answer", None)


@pytest.mark.parametrize("user,assistant", [("user", "assistant"), ("human", "gpt")])
def test_sharegpt_conversations(tmp_path, user, assistant):
    # OpenThoughts rows: a `system` column and `conversations` of from/value turns.
    row = {"system": "Your role as an assistant...",
           "conversations": [{"from": user, "value": "Find x."},
                             {"from": assistant, "value": "<|begin_of_thought|>...\\boxed{7}"}]}
    ex = one(row, tmp_path)
    assert (ex.prompt, ex.response, ex.answer) == ("Find x.", "<|begin_of_thought|>...\\boxed{7}", "7")


def test_gsm8k_real_rows():
    rows = real_rows(SHARED_DATA / "gsm8k" / "train.jsonl", 5)
    path = SHARED_DATA / "gsm8k" / "train.jsonl"
    got = examples(path, limit=5)
    assert len(got) == 5
    for row, ex in zip(rows, got):
        assert ex.prompt == row["question"]
        assert ex.response == row["answer"]  # the #### line stays in the response
        last_line = row["answer"].splitlines()[-1]
        assert last_line.startswith("#### ") and ex.answer == last_line[len("#### "):]
    assert got[0].answer == "72"


def test_math_real_rows():
    rows = real_rows(MATH, 20)
    got = examples(MATH, limit=20)
    for row, ex in zip(rows, got):
        assert (ex.prompt, ex.response, ex.id) == (row["problem"], row["solution"], row["unique_id"])
        # The answer is the whole content of the LAST \boxed{...}.
        assert ex.answer and row["solution"].rfind("\\boxed{") == row["solution"].rfind(f"\\boxed{{{ex.answer}}}")


def test_math_nested_boxed(tmp_path):
    ex = one({"problem": "p", "solution": "So $\\boxed{1}$ no, $x=\\boxed{\\frac{1}{2}}$."}, tmp_path)
    assert ex.answer == "\\frac{1}{2}"


def test_field_overrides_beat_detection(tmp_path):
    fields = parse_field_overrides(("prompt=q", "response=a"))
    assert fields == {"prompt": "q", "response": "a"}
    row = {"prompt": "wrong prompt", "response": "wrong response", "q": "right prompt", "a": "right #### 4",
           "messages": [{"role": "user", "content": "chat"}, {"role": "assistant", "content": "chat"}]}
    ex = one(row, tmp_path, fields=fields)
    assert (ex.prompt, ex.response, ex.answer) == ("right prompt", "right #### 4", "4")


def test_field_overrides_for_groups_and_id(tmp_path):
    fields = parse_field_overrides(["source=subject", "domain=area", "id=key"])
    ex = one({"question": "q", "answer": "a", "subject": "algebra", "area": "math", "key": 9}, tmp_path,
             fields=fields)
    assert (ex.source, ex.domain, ex.id) == ("algebra", "math", "9")


@pytest.mark.parametrize("item", ["prompt", "prompt=", "colour=q"])
def test_bad_field_override(item):
    with pytest.raises(DataError, match="--field"):
        parse_field_overrides([item])


def test_source_and_domain_default(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"question": "a", "answer": "b"},
                                              {"question": "c", "answer": "d", "source": "", "domain": None},
                                              {"question": "e", "answer": "f", "source": "s", "domain": "d"}])
    assert [(ex.source, ex.domain) for ex in examples(path)] == [
        ("default", "default"), ("default", "default"), ("s", "d")]


# --- ids ---------------------------------------------------------------------------------------


def test_id_column_is_used(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"id": 17, "question": "a", "answer": "b"},
                                              {"id": "x-1", "question": "c", "answer": "d"}])
    assert [ex.id for ex in examples(path)] == ["17", "x-1"]


def test_content_hash_ids_stable_across_order_and_runs(tmp_path):
    rows = [{"question": f"q{i}", "answer": f"a{i}"} for i in range(5)]
    forward = {ex.prompt: ex.id for ex in examples(write_jsonl(tmp_path / "f.jsonl", rows))}
    backward = {ex.prompt: ex.id for ex in examples(write_jsonl(tmp_path / "b.jsonl", rows[::-1]))}
    assert forward == backward and len(set(forward.values())) == 5
    # A fresh interpreter with another hash seed gives the same ids (no Python hash() involved).
    code = ("import json,sys; from reasonsift.data.load import iter_examples; "
            "print(json.dumps({e.prompt: e.id for _, e, _ in iter_examples(sys.argv[1])}))")
    env = {**os.environ, "PYTHONPATH": SRC, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "f.jsonl")], env=env,
                         capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == forward


def test_content_hash_changes_with_content(tmp_path):
    a = one({"question": "q", "answer": "a"}, tmp_path).id
    b = one({"question": "q", "answer": "a "}, tmp_path).id
    c = one({"question": "q ", "answer": "a"}, tmp_path).id
    assert len({a, b, c}) == 3


def test_duplicates_get_suffixes(tmp_path):
    row = {"question": "same", "answer": "same"}
    path = write_jsonl(tmp_path / "p.jsonl", [row, {"question": "other", "answer": "x"}, row, row])
    ids = [ex.id for ex in examples(path)]
    assert ids[2:] == [f"{ids[0]}#2", f"{ids[0]}#3"] and ids[1] != ids[0] and "#" not in ids[0]
    path = write_jsonl(tmp_path / "q.jsonl", [{"id": "k", "question": "a", "answer": "b"},
                                              {"id": "k", "question": "c", "answer": "d"}])
    assert [ex.id for ex in examples(path)] == ["k", "k#2"]


# --- formats -----------------------------------------------------------------------------------

REASONING_ROWS = [
    {"question": "Wie viel ist 2+2? 日本", "thinking_trajectories": ["Zwei plus zwei.", "Also 4."],
     "attempt": "4", "source": "de"},
    {"question": "What is 3*3?", "thinking_trajectories": ["Three threes."], "attempt": "9", "source": "en"},
    {"question": "What is 3*3?", "thinking_trajectories": ["Three threes."], "attempt": "9", "source": "en"},
]
CHAT_ROWS = [
    {"messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": "u1 é"},
                  {"role": "assistant", "content": "a1 \\boxed{2}"}]},
    {"messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": "u2"},
                  {"role": "assistant", "content": "a2"}]},
]


def write_format(rows: list[dict], fmt: str, root: Path) -> tuple[Path, str]:
    """Write rows in one input format; returns (source, split)."""
    if fmt == "jsonl":
        return write_jsonl(root / "pool.jsonl", rows), "train"
    if fmt == "jsonl.gz":
        path = root / "pool.jsonl.gz"
        path.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode()))
        return path, "train"
    if fmt == "json":
        path = root / "pool.json"
        path.write_text(json.dumps(rows, indent=1), encoding="utf-8")
        return path, "train"
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = root / "pool.parquet"
        pq.write_table(pa.Table.from_pylist(rows), path)
        return path, "train"
    import datasets

    ds = datasets.Dataset.from_list(rows)
    if fmt == "save_to_disk":
        ds.save_to_disk(str(root / "ds"))
        return root / "ds", "train"
    datasets.DatasetDict({"train": ds.select([0]), "validation": ds}).save_to_disk(str(root / "dd"))
    return root / "dd", "validation"


@pytest.mark.parametrize("fmt", ["jsonl.gz", "json", "parquet", "save_to_disk", "datasetdict"])
@pytest.mark.parametrize("rows", [REASONING_ROWS, CHAT_ROWS], ids=["reasoning", "chat"])
def test_formats_yield_the_same_examples(tmp_path, fmt, rows):
    expected = examples(write_jsonl(tmp_path / "reference.jsonl", rows))
    assert len(expected) == len(rows) and all(ex is not None for ex in expected)
    source, split = write_format(rows, fmt, tmp_path)
    got = list(iter_examples(source, split=split))
    assert [ex for _, ex, _ in got] == expected
    for raw, _, _ in got:  # non-JSONL formats keep the row as canonical JSON
        assert json.loads(raw.raw) == raw.row


def test_reasoning_rows_parse_as_expected(tmp_path):
    got = examples(write_jsonl(tmp_path / "p.jsonl", REASONING_ROWS))
    assert got[0].response == "Zwei plus zwei.\nAlso 4.\n\n4" and got[0].source == "de"
    assert got[2].id == got[1].id + "#2"


def test_jsonl_raw_is_the_exact_line(tmp_path):
    lines = [
        b'{ "answer" :"#### 5",   "question":"\xc3\x87a co\xc3\xbbte 5 \xe2\x82\xac ?" }',
        b'{"question": "\\u00e9t\\u00e9", "answer": "x", "extra": [1, 2.50, null]}',
        b'{"question":"\xe6\x97\xa5\xe6\x9c\xac","answer":"y"}\t ',
    ]
    path = tmp_path / "p.jsonl"
    path.write_bytes(lines[0] + b"\n" + lines[1] + b"\r\n\n" + lines[2])  # CRLF, a blank line, no final newline
    raws = list(iter_rows(path))
    assert [r.raw.encode("utf-8") for r in raws] == lines
    assert [r.where for r in raws] == ["p.jsonl:1", "p.jsonl:2", "p.jsonl:4"]
    assert [r.index for r in raws] == [0, 1, 2]
    assert raws[0].row["question"] == "Ça coûte 5 € ?"


def test_json_object_with_data_list(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"data": [{"question": "q", "answer": "a"}]}), encoding="utf-8")
    assert [ex.prompt for ex in examples(path)] == ["q"]


# --- bad input ---------------------------------------------------------------------------------

GOOD = b'{"question": "good", "answer": "#### 1"}'
BAD_CASES = {
    "malformed": (b'{"question": "x", "answer": ', None, "malformed JSON"),
    "missing": (b'{"q": "x"}', ("prompt=q", "response=a"), "missing field 'a'"),
    "empty": (b'{"question": "  ", "answer": "#### 2"}', None, "empty field 'question'"),
    "not_utf8": (b'{"question": "caf\xe9", "answer": "1"}', None, "not valid UTF-8"),
    # The first good row fixes the schema (question/answer), so later rows are held to it.
    "other_schema": (b'{"text": "just text"}', None, "missing field 'question'"),
    "null_response": (b'{"question": "x", "answer": null}', None, "missing field 'answer'"),
    "not_object": (b'[1, 2, 3]', None, "expected a JSON object"),
    "empty_assistant": (b'{"messages": [{"role": "user", "content": "u"}, {"role": "assistant", "content": ""}]}',
                        None, "empty assistant turn"),
    "missing_id": (b'{"q": "x", "a": "y"}', ("prompt=q", "response=a", "id=key"), "missing field 'key'"),
}


def bad_file(tmp_path: Path, line: bytes, fields: tuple | None) -> Path:
    """Good row (line 1), blank (line 2), the bad row (line 3), good row (line 4).

    The good rows share the bad row's schema (the first good row fixes the schema of the file).
    """
    path = tmp_path / "pool.jsonl"
    good = GOOD if fields is None else b'{"q": "good", "a": "#### 1", "key": "k"}'
    if line.startswith(b'{"messages"'):
        good = b'{"messages": [{"role": "user", "content": "good"}, {"role": "assistant", "content": "1"}]}'
    path.write_bytes(good + b"\n\n" + line + b"\n" + good.replace(b"good", b"also good") + b"\n")
    return path


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_bad_row_raises_one_line_error(tmp_path, case):
    line, fields, problem = BAD_CASES[case]
    path = bad_file(tmp_path, line, fields)
    with pytest.raises(DataError) as err:
        list(iter_examples(path, fields=parse_field_overrides(fields or ())))
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("pool.jsonl:3: ") and problem in msg


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_bad_row_is_quarantined_with_skip(tmp_path, case):
    line, fields, problem = BAD_CASES[case]
    path = bad_file(tmp_path, line, fields)
    got = list(iter_examples(path, fields=parse_field_overrides(fields or ()), skip_bad_rows=True))
    assert len(got) == 3
    (_, ex0, r0), (raw, bad, reason), (_, ex2, r2) = got
    assert bad is None and problem in reason and "\n" not in reason
    assert raw.where == "pool.jsonl:3" and raw.raw.encode() == line.decode("utf-8", "replace").encode()
    assert ex0.prompt == "good" and ex2.prompt == "also good" and r0 is None and r2 is None
    assert (ex0.row_index, ex2.row_index) == (0, 2)


def test_bad_item_in_json_array(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps([{"question": "q", "answer": "a"}, "oops"]), encoding="utf-8")
    with pytest.raises(DataError, match=r"^p\.json item 1: expected an object"):
        list(iter_examples(path))


@pytest.mark.parametrize("name,content,problem", [
    ("missing.jsonl", None, "no such file"),
    ("pool.csv", b"question,answer\n", "unsupported file type"),
    ("broken.json", b'[{"question": "q",', "malformed JSON"),
    ("truncated.jsonl.gz", gzip.compress(GOOD * 2000 + b"\n")[:200], "unreadable"),
    ("corrupt.parquet", b"not a parquet file", "not a readable parquet file"),
])
def test_unreadable_inputs(tmp_path, name, content, problem):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError) as err:
        list(iter_examples(path))
    assert problem in str(err.value) and name in str(err.value) and "\n" not in str(err.value)


def test_folder_problems(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="not a datasets.save_to_disk folder") as err:
        list(iter_examples(tmp_path / "empty"))
    assert "\n" not in str(err.value)
    source, _ = write_format(REASONING_ROWS, "datasetdict", tmp_path)
    with pytest.raises(DataError, match="no split 'test'"):
        list(iter_examples(source, split="test"))


def test_unreachable_hub_id(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # The libraries read the variable at import; other tests may have imported them already.
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    with pytest.raises(DataError) as err:
        list(iter_examples("no-such-org/no-such-dataset"))
    msg = str(err.value)
    assert msg.startswith("no-such-org/no-such-dataset: ") and "\n" not in msg and "hub" in msg


def test_limit_stops_early(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"question": f"q{i}", "answer": "a"} for i in range(10)])
    assert [ex.prompt for ex in examples(path, limit=3)] == ["q0", "q1", "q2"]


def test_alpaca_instruction_and_input_form_the_prompt():
    from reasonsift.data.formats import RawRow
    from reasonsift.data.load import to_example

    row = {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"}
    ex = to_example(RawRow(0, "x", "", row))
    assert ex.prompt == "Add the numbers.\n\n2 and 3" and ex.response == "5"
    row["input"] = ""
    assert to_example(RawRow(0, "x", "", row)).prompt == "Add the numbers."


def test_unknown_schema_on_the_first_row(tmp_path):
    path = tmp_path / "pool.jsonl"
    path.write_text('{"text": "just text"}\n')
    with pytest.raises(DataError, match=r"pool.jsonl:1: unknown schema: no prompt column"):
        list(iter_examples(path))


def test_schema_is_fixed_by_the_first_good_row(tmp_path):
    """A reasoning-schema row without its answer column is an error, not a shorter response."""
    path = tmp_path / "pool.jsonl"
    path.write_text('{"prompt": "p1", "reasoning": "r1", "distilled_answer_string": "a1"}\n'
                    '{"prompt": "p2", "reasoning": "r2"}\n')
    with pytest.raises(DataError, match=r"pool.jsonl:2: missing field 'distilled_answer_string'"):
        list(iter_examples(path))
    got = list(iter_examples(path, skip_bad_rows=True))
    assert got[0][1].response == "r1\n\na1" and got[1][1] is None


def test_gold_answer_column_beside_a_response(tmp_path):
    rows = [{"prompt": "7+5?", "response": "7+5=12\nanswer: 12", "answer": "12"},
            {"prompt": "2+2?", "response": "2+2=4 #### 4"},  # optional: a later row without it is good
            {"prompt": "1+1?", "response": "1+1=2", "answer": None}]
    got = examples(write_jsonl(tmp_path / "pool.jsonl", rows))
    assert [ex.answer for ex in got] == ["12", "4", ""]
    assert got[0].response == rows[0]["response"]  # the gold column is not the response


def _skythought_rows(tmp_path):
    """SkyThought output rows: a reference ``solution`` and the model's long trace in ``code``."""
    rows = [{"question": f"What is {i}+{i}?", "solution": f"{i}+{i}={2 * i}, so \\boxed{{{2 * i}}}",
             "code": "<think>" + "Let me add the two numbers carefully. " * 8 + f"</think> \\boxed{{{2 * i}}}"}
            for i in range(3)]
    path = tmp_path / "sky.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_a_choice_between_plausible_response_columns_is_said_and_recorded(tmp_path, caplog):
    from reasonsift.data.load import input_schema

    path = _skythought_rows(tmp_path)
    with caplog.at_level("WARNING", logger="reasonsift.data.load"):
        examples = [ex for _, ex, _ in iter_examples(path)]
    assert examples[0].response.startswith("0+0=0")  # the choice by name is kept, but said
    warning = " ".join(r.getMessage() for r in caplog.records)
    assert "'solution'" in warning and "'code'" in warning and "--field response=" in warning
    assert input_schema(path) == {"columns": {"prompt": "question", "response": "solution"},
                                  "other_response_columns": ["code"]}
    # --field decides: no warning, and the trace is the response
    caplog.clear()
    with caplog.at_level("WARNING", logger="reasonsift.data.load"):
        examples = [ex for _, ex, _ in iter_examples(path, parse_field_overrides(["response=code"]))]
    assert examples[0].response.startswith("<think>") and not caplog.records
    assert input_schema(path, {"response": "code"})["other_response_columns"] == []


def test_an_unambiguous_row_warns_of_nothing(tmp_path, caplog):
    path = tmp_path / "plain.jsonl"
    path.write_text(json.dumps({"question": "q", "answer": "a long worked answer #### 4"}) + "\n", encoding="utf-8")
    with caplog.at_level("WARNING", logger="reasonsift.data.load"):
        assert len(list(iter_examples(path))) == 1
    assert not caplog.records


def test_numbers_and_bools_are_not_responses_and_conversions_are_counted(tmp_path):
    """A number or bool as the response is a bad row; a list of strings is joined but counted, with the
    column named, as is a number used as the final answer."""
    from reasonsift.data.load import iter_examples

    path = tmp_path / "pool.jsonl"
    rows = [{"question": "q1", "response": "fine"}, {"question": "q2", "response": ["a", "b"]},
            {"question": "q3", "response": 42}, {"question": "q4", "response": True}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    coerced: dict = {}
    out = list(iter_examples(path, skip_bad_rows=True, coerced=coerced))
    assert [ex.response if ex else reason for _, ex, reason in out] == [
        "fine", "a\nb", "field 'response' is int, expected text", "field 'response' is bool, expected text"]
    assert coerced == {"rows": 1, "fields": {"response: list of strings joined by newlines": 1},
                       "example": "pool.jsonl:2"}
    reasoning = tmp_path / "reasoning.jsonl"
    reasoning.write_text(json.dumps({"prompt": "p", "reasoning": "r", "answer": 7}) + "\n", encoding="utf-8")
    coerced = {}
    [(_, ex, _)] = list(iter_examples(reasoning, coerced=coerced))
    assert ex.response == "r\n\n7" and coerced["fields"] == {"answer: number written as text": 1}


def test_an_integer_parquet_column_is_not_scored_as_text(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from reasonsift.data.load import iter_examples

    path = tmp_path / "pool.parquet"
    pq.write_table(pa.table({"question": ["q1", "q2"], "response": pa.array([1, 2], pa.int64())}), path)
    with pytest.raises(DataError, match=r"pool.parquet row 0: field 'response' is int, expected text"):
        list(iter_examples(path))


def test_a_truncated_gz_keeps_its_readable_rows_under_skip_bad_rows(tmp_path):
    rows = [{"question": f"q{i} " + "x" * 200, "answer": f"a{i}"} for i in range(400)]
    data = gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode())
    path = tmp_path / "pool.jsonl.gz"
    path.write_bytes(data[: len(data) // 2])
    out = list(iter_examples(path, skip_bad_rows=True))
    good = [ex for _, ex, _ in out if ex is not None]
    assert len(good) > 50 and [ex.prompt for ex in good] == [r["question"] for r in rows[:len(good)]]
    raw, ex, reason = out[-1]
    assert ex is None and "file truncated or corrupt, unreadable after pool.jsonl.gz:" in reason
    with pytest.raises(DataError, match="unreadable after"):
        list(iter_examples(path))


def test_a_row_of_another_schema_says_so(tmp_path):
    path = write_jsonl(tmp_path / "mixed.jsonl", [
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
        {"question": "2+2?", "answer": "4"}])
    with pytest.raises(DataError, match=r"mixed.jsonl:2: field 'messages' .*: this row has another schema "
                                        r"\(prompt=question, response=answer\) than the first good row "
                                        r"\(messages=messages\)"):
        list(iter_examples(path))
