"""load_benchmark on the real files in ../shared/data and on the same rows rewritten as .json/.parquet."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from reasonsift.evaluation.benchmarks import load_benchmark
from tests.conftest import shared_data_or_skip

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


def _real(rel: str) -> Path:
    """A file under ../shared/data (skip the test when it is absent)."""
    path = DATA / rel
    shared_data_or_skip(path)
    return path


def _gsm8k_rows(n: int) -> list[dict]:
    with open(_real("gsm8k/train.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for _, line in zip(range(n), f)]


def test_gsm8k_jsonl():
    items = load_benchmark(_real("gsm8k/train.jsonl"), limit=50)
    rows = _gsm8k_rows(50)
    assert len(items) == 50
    assert [it["id"] for it in items] == [str(i) for i in range(50)]  # no id field: the position
    for item, row in zip(items, rows):
        assert item["kind"] == "math"
        assert item["question"] == row["question"] and item["row"] == row
        assert item["gold"] == row["answer"].rsplit("####", 1)[1].strip()


def test_math_jsonl_ids_and_golds():
    items = load_benchmark(_real("math/train.jsonl"), limit=30)
    assert items[0]["id"] == "train/algebra/0.json" and items[0]["gold"] == "0"
    assert items[1]["gold"] == "8+4i"
    assert all(it["kind"] == "math" and it["question"] == it["row"]["problem"] for it in items)


def test_math_empty_boxes_raise_or_are_skipped():
    path = _real("math/train.jsonl")
    with pytest.raises(ValueError, match=r"train\.jsonl:5530: no gold answer field"):
        load_benchmark(path)
    items = load_benchmark(path, skip_bad_rows=True)
    assert len(items) == 7500 - 2
    assert "train/number_theory/7115.json" not in {it["id"] for it in items}


def test_jsonl_gz():
    items = load_benchmark(_real("sky_t1_long_cot/Sky-T1-math-correct-5K-27B.math500.jsonl.gz"), limit=5)
    assert [it["id"] for it in items] == ["0", "1", "2", "3", "4"]  # the "idx" field
    assert items[0]["question"].startswith("Convert the point $(0,3)$")
    assert items[0]["kind"] == "math" and "\\frac{\\pi}{2}" in items[0]["gold"]


@pytest.mark.parametrize("suffix", [".json", ".parquet"])
def test_json_and_parquet_match_jsonl(tmp_path: Path, suffix: str):
    rows = _gsm8k_rows(20)
    path = tmp_path / f"gsm8k{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps(rows), encoding="utf-8")
    else:
        pq.write_table(pa.Table.from_pylist(rows), path)
    expected = load_benchmark(_real("gsm8k/train.jsonl"), limit=20)
    assert load_benchmark(path) == expected
    assert len(load_benchmark(path, limit=7)) == 7


def test_flan_tsv_multiple_choice():
    items = load_benchmark(_real("flan_cot/aqua_train.tsv"), limit=40)
    assert len(items) == 40
    assert items[0]["gold"] == "C" and items[0]["row"]["answer"] == "(C)"
    for item in items:
        assert item["kind"] == "choice" and item["gold"] in "ABCDE"
        assert "\\n" not in item["question"] and "\n(A) " in item["question"]  # literal \n became a newline
        assert item["row"]["rationale"]
    qasc = load_benchmark(_real("flan_cot/qasc_train.tsv"))
    assert {it["kind"] for it in qasc} == {"choice"}
    assert {it["gold"] for it in qasc} == set("ABCDEFGH")  # QASC has 8 options


@pytest.mark.parametrize(("name", "golds"), [("creak", {"yes", "no"}), ("strategyqa", {"yes", "no"}),
                                             ("sensemaking", {"Sentence A", "Sentence B"})])
def test_flan_tsv_text(name: str, golds: set[str]):
    items = load_benchmark(_real(f"flan_cot/{name}_train.tsv"), limit=200)
    assert {it["kind"] for it in items} == {"text"}
    assert {it["gold"] for it in items} == golds


def test_malformed_json_names_file_and_line(tmp_path: Path):
    lines = [json.dumps(r) for r in _gsm8k_rows(3)]
    lines[1] = lines[1][:-5]  # cut off the closing of line 2
    path = tmp_path / "broken.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"broken\.jsonl:2: malformed JSON") as err:
        load_benchmark(path)
    assert "\n" not in str(err.value)


def test_missing_fields_name_file_and_line(tmp_path: Path):
    rows = _gsm8k_rows(3)
    rows[2] = {"question": rows[2]["question"]}  # no answer
    path = tmp_path / "nogold.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    with pytest.raises(ValueError, match=r"nogold\.jsonl:3: no gold answer field"):
        load_benchmark(path)
    assert len(load_benchmark(path, skip_bad_rows=True)) == 2
    path.write_text(json.dumps({"answer": "#### 4"}) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"nogold\.jsonl:1: no question field"):
        load_benchmark(path)


def test_other_errors(tmp_path: Path):
    dup = tmp_path / "dup.jsonl"
    dup.write_text('{"id": "a", "question": "q", "answer": "1"}\n' * 2, encoding="utf-8")
    with pytest.raises(ValueError, match=r"dup\.jsonl:2: duplicate id 'a'"):
        load_benchmark(dup)
    tsv = tmp_path / "two_cols.tsv"
    tsv.write_text("question?\tyes\trationale\nquestion only\tyes\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"two_cols\.tsv:2: expected 3 tab-separated columns"):
        load_benchmark(tsv)
    with pytest.raises(ValueError, match="unsupported benchmark format"):
        load_benchmark(tsv.rename(tmp_path / "data.csv"))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no benchmark items"):
        load_benchmark(empty)
    with pytest.raises(FileNotFoundError):
        load_benchmark(tmp_path / "missing.jsonl")


def test_gsm8k_empty_gold_names_file_and_row(tmp_path: Path):
    path = tmp_path / "cut.jsonl"
    path.write_text(json.dumps({"question": "2+2?", "answer": "#### 4"}) + "\n"
                    + json.dumps({"question": "3+4?", "answer": "3 + 4 = 7\n####"}) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"cut\.jsonl:2: .*'####' with no final answer") as err:
        load_benchmark(path)
    assert "\n" not in str(err.value)
    assert [it["gold"] for it in load_benchmark(path, skip_bad_rows=True)] == ["4"]  # never the gold "####"
