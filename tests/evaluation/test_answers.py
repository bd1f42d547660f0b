"""Answer extraction, gold answers and equivalence, on real GSM8K / MATH / AQuA / MATH500-trace strings."""

from __future__ import annotations

import gzip
import json
import sys
import threading
from pathlib import Path

import pytest

from reasonsift.evaluation.answers import extract_answer, gold_answer, is_equivalent, normalize_answer, question_text
from tests.conftest import shared_data_or_skip

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


def _jsonl(rel: str, n: int) -> list[dict]:
    """The first n rows of a JSONL file under ../shared/data (skip the test when it is absent)."""
    path = DATA / rel
    shared_data_or_skip(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for _, line in zip(range(n), f)]


def _aqua(n: int) -> list[tuple[str, str, str]]:
    """(question, answer, rationale) of the first n AQuA rows of FLAN's TSV."""
    path = DATA / "flan_cot" / "aqua_train.tsv"
    shared_data_or_skip(path)
    with open(path, encoding="utf-8") as f:
        return [tuple(line.rstrip("\n").split("\t")) for _, line in zip(range(n), f)]


def test_gsm8k_gold_first_200_rows():
    for row in _jsonl("gsm8k/train.jsonl", 200):
        gold = gold_answer(row)
        assert gold and "####" not in gold and "\n" not in gold
        assert gold == row["answer"].rsplit("####", 1)[1].strip()
        assert is_equivalent(gold, gold)
        # the reference solution itself is a correct generation: its "#### N" line is extracted
        assert is_equivalent(extract_answer(row["answer"]), gold)
        assert not is_equivalent(str(int(gold.replace(",", "")) + 1), gold)


def test_math_gold_first_200_rows():
    for row in _jsonl("math/train.jsonl", 200):
        gold = gold_answer(row)
        assert gold and gold.count("{") == gold.count("}"), row["unique_id"]
        assert gold in row["solution"][row["solution"].rfind("\\boxed") :]  # the content of the last box
        assert is_equivalent(gold, gold), (row["unique_id"], gold)
        assert extract_answer(row["solution"]) == gold


def test_gsm8k_thousands_commas():
    rows = _jsonl("gsm8k/train.jsonl", 2000)
    golds = [gold_answer(r) for r in rows if "," in gold_answer(r)]
    assert golds, "GSM8K train has golds like 1,080 in its first 2000 rows"
    for gold in golds:
        assert is_equivalent(gold.replace(",", ""), gold)
        assert extract_answer(f"So she pays {gold} dollars in total.") == gold.replace(",", "")
    assert is_equivalent("1,000", "1000") and is_equivalent("1000", "1,000")
    assert not is_equivalent("1,001", "1000")


def test_fraction_forms_are_equivalent():
    pred = extract_answer("Half of the cake is left, so the answer is $\\boxed{\\frac{1}{2}}$.")
    assert pred == "\\frac{1}{2}"
    for other in ("0.5", "1/2", "\\dfrac12", "\\frac12", "0.50", "$\\tfrac{1}{2}$"):
        assert is_equivalent(pred, other), other
        assert is_equivalent(other, pred), other
    assert not is_equivalent(pred, "0.49")
    assert not is_equivalent("\\frac{1}{3}", "0.33")


def test_boxed_and_hash_agree():
    boxed = extract_answer("We add them: $1+2=\\boxed{3}$.")
    hashed = extract_answer("1 + 2 = <<1+2=3>>3\n#### 3")
    assert boxed == hashed == "3"
    assert is_equivalent(boxed, hashed)


def test_priority_last_boxed_then_hash_then_phrase_then_last_number():
    assert extract_answer("first \\boxed{1}, then \\boxed{\\frac{2}{3}} #### 7") == "\\frac{2}{3}"
    assert extract_answer("nested \\boxed{\\sqrt{\\frac{1}{4}}} end") == "\\sqrt{\\frac{1}{4}}"
    assert extract_answer("ok \\boxed{5} then truncated \\boxed{12") == "5"  # unbalanced: the box before
    assert extract_answer("\\fbox{12}") == "12"
    assert extract_answer("The answer is 4.\n#### 9") == "9"
    assert extract_answer("I get 3, 4 and 5. The final answer is 12 apples.") == "12"
    assert extract_answer("Final Answer:\n42\nThanks, 7") == "42"
    assert extract_answer("3 apples plus 4 apples make 7 apples") == "7"


def test_last_number_forms():
    assert extract_answer("It costs $5 in all") == "5"
    assert extract_answer("The tax rate is 50%") == "50"
    assert extract_answer("A total of 1,000 pages") == "1000"
    assert extract_answer("so the mean is 2.75.") == "2.75"
    assert extract_answer("no digits at all") is None


def test_negative_numbers():
    assert extract_answer("Solving gives x = -3") == "-3"
    assert extract_answer("The temperature fell to \u22125 degrees") == "-5"  # Unicode minus
    assert extract_answer("so $y=\\boxed{-12}$") == "-12"
    assert extract_answer("The answer is -3.5.") == "-3.5"
    assert extract_answer("5-3 = 2") == "2"  # a minus between numbers is subtraction, not a sign
    assert is_equivalent("-3", "-3.0")
    assert not is_equivalent("-3", "3")
    assert not is_equivalent("3", "-3")


def test_multiple_choice_on_real_aqua_rows():
    rows = _aqua(50)
    for question, answer, rationale in rows:
        letter = answer.strip("()")
        wrong = "A" if letter != "A" else "B"
        generation = f"{rationale}\\nSo the answer is {answer}."
        assert extract_answer(generation, kind="choice") == letter
        assert is_equivalent(extract_answer(generation, kind="choice"), answer, kind="choice")
        assert is_equivalent(letter.lower(), answer)  # case-insensitive letters, auto-detected
        assert not is_equivalent(wrong, answer, kind="choice")
    assert extract_answer("Option B) matches 1120", kind="choice") == "B"
    assert extract_answer("the answer is D", kind="choice") == "D"
    assert extract_answer("\\boxed{\\text{(E)}}", kind="choice") == "E"
    assert extract_answer("The answer is a car", kind="choice") is None  # an article, not option A


def test_text_answers():
    assert extract_answer("Pink Floyd has no such rule. So the answer is no.", kind="text") == "no"
    assert is_equivalent("No.", "no") and not is_equivalent("yes", "no")
    assert is_equivalent("sentence a", "Sentence A") and not is_equivalent("Sentence B", "Sentence A")


def test_empty_generation_is_none_and_wrong():
    for text in ("", "   \n", None):
        assert extract_answer(text) is None
        assert extract_answer(text, kind="choice") is None
    assert not is_equivalent(None, "72")
    assert not is_equivalent("", "72")


def test_missing_answer_fields_raise():
    with pytest.raises(ValueError, match="no gold answer field.*gold.*final_answer.*target.*label"):
        gold_answer({"question": "What is 2+2?"})
    with pytest.raises(ValueError, match="no gold answer field"):
        gold_answer({"question": "q", "answer": "   ", "solution": "no box here"})
    with pytest.raises(ValueError, match="no gold answer field"):
        gold_answer({"problem": "p", "solution": "empty box: $\\boxed{}$"})  # as train/number_theory/7115.json
    with pytest.raises(ValueError, match="question.*problem.*prompt.*instruction.*input"):
        question_text({"answer": "4"})
    assert gold_answer({"target": 0}) == "0"  # a present, falsy label is still a gold
    assert gold_answer({"gold": "", "label": "B"}) == "B"
    assert question_text({"question": "", "problem": "Find x."}) == "Find x."


def test_math_verify_on_real_math500_answers():
    # MATH500 ships two spellings of each answer: "gt" and "answer" ("(3,\frac{\pi}{2})" vs "\left( 3, ...")
    rows = _jsonl("sky_t1_long_cot/Sky-T1-math-correct-5K-27B.math500.jsonl.gz", 20)
    for row in rows:
        assert is_equivalent(row["gt"], gold_answer(row)), (row["gt"], row["answer"])
    assert is_equivalent("2\\sqrt{2}", "\\sqrt{8}")
    assert is_equivalent("x^2+2x+1", "(x+1)^2")
    assert not is_equivalent("2\\sqrt{3}", "\\sqrt{8}")


def test_math_verify_works_off_the_main_thread():
    results = []
    thread = threading.Thread(target=lambda: results.append(is_equivalent("2\\sqrt{2}", "\\sqrt{8}")))
    thread.start()
    thread.join(timeout=60)
    assert results == [True]


def test_odd_inputs_never_raise():
    odd = ["{{{", "\\frac{", "\\boxed{", "1/0", "\\frac{1}{0}", "∞", "()", "$$", "\\", "x" * 5000, "1e400", "NaN"]
    for a in odd:
        for b in ("3", "\\frac{1}{2}", "(B)", "yes", a):
            assert isinstance(is_equivalent(a, b), bool)
        assert isinstance(normalize_answer(a), str)
        extract_answer(a)  # must not raise either


def test_missing_math_verify_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "math_verify", None)  # makes `import math_verify` raise ImportError
    assert is_equivalent("1,000", "1000")  # the normalised comparison needs no math-verify
    with pytest.raises(ImportError, match=r"pip install 'reasonsift\[math\]'"):
        is_equivalent("2\\sqrt{2}", "\\sqrt{8}")


def test_unknown_kind_raises():
    with pytest.raises(ValueError, match="unknown answer kind"):
        extract_answer("42", kind="number")


def test_answer_phrase_gives_the_result_not_the_first_number():
    # The audit's two strings: the first operand (3, 2) used to be taken.
    assert extract_answer("The answer is 3 + 4 = 7 apples.") == "7"
    assert extract_answer("Let me answer: first compute 2*3=6. Then 6+1=7.") == "7"  # "answer" as a verb
    assert extract_answer("The answer is 3 + 4 = 7.") == "7"
    assert extract_answer("To answer: 5 + 5 = 10") == "10"
    assert extract_answer("The answer is 18 dollars, 2 more than 16.") == "18"  # the value stated first
    assert extract_answer("The final answer is that she has 18 dollars left") == "18"
    assert extract_answer("The answer is $18 per hour.") == "18"
    assert extract_answer("the answer is \\frac{1}{2} inches") == "\\frac{1}{2}"
    assert extract_answer("The answer is y = 2x + 3") == "y = 2x + 3"  # an equation can be the answer
    # Real final sentences of MATH500 traces (sky_t1_long_cot, idx 8, 52, 113, 207, 19).
    assert extract_answer("So, the final answer is 3*sqrt(13) units.") == "3*sqrt(13)"
    assert is_equivalent(extract_answer("So, the final answer is 3*sqrt(13) units."), "3\\sqrt{13}")
    assert extract_answer("Everything checks out. I think the answer is indeed 12.") == "12"
    assert extract_answer("Everything checks out. I think the answer is definitely \\(8000\\).") == "8000"
    assert extract_answer("So, the final answer is 28 different pizzas.") == "28"
    assert is_equivalent(extract_answer("So, the answer is \\( a = 3 \\)."), "3")


def test_gsm8k_gold_with_nothing_after_hashes_raises():
    with pytest.raises(ValueError, match="'####' with no final answer"):
        gold_answer({"question": "q", "answer": "3 + 4 = 7\n####"})
    with pytest.raises(ValueError, match="'####' with no final answer"):
        gold_answer({"question": "q", "answer": "####   "})
    assert gold_answer({"question": "q", "answer": "3 + 4 = 7\n#### 7"}) == "7"


# Grader defects found by checking it against 6,716 labelled model solutions (issue 17).

def test_answer_column_wins_over_the_solutions_last_box():
    # AIME-style row: the solution's last box is not the answer; "73" and "073" must both score
    row = {"problem": "p", "solution": "... so $\\boxed{5}$ pairs, and the answer is $\\textbf{(073)}$", "answer": "073"}
    assert gold_answer(row) == "073"
    assert is_equivalent("73", gold_answer(row)) and is_equivalent("073", gold_answer(row))
    assert gold_answer({"problem": "p", "solution": "so \\boxed{100}", "answer": "73"}) == "73"
    assert gold_answer({"problem": "p", "solution": "so \\boxed{100}"}) == "100"  # MATH: no answer column


def test_base_subscripts_are_not_ignored():
    assert not is_equivalent("4343", "4343_6")
    assert not is_equivalent("4343_{10}", "4343_6")
    assert is_equivalent("4343_{6}", "4343_6") and is_equivalent("4343_6", "4343_{6}")
    assert is_equivalent("4343_{10}", "4343")  # base ten written out is base ten
    assert not is_equivalent("101_2", "5")  # the value in another base is not what was asked
    assert is_equivalent("1A_{16}", "1a_{16}")


def test_ordinal_and_unit_words_around_a_number():
    assert is_equivalent("12^{\\text{th}}\\text{ grade}", "12")
    assert is_equivalent(extract_answer("The answer is \\boxed{12^{\\text{th}}\\text{ grade}}"), "12")
    assert is_equivalent("12th", "12") and is_equivalent("5 apples", "5")
    assert not is_equivalent("2x", "2") and not is_equivalent("2 and 3", "2")


def test_spelled_out_numbers_are_read():
    assert extract_answer("So the answer is three.") == "3"
    assert extract_answer("The answer is twenty-five apples") == "25"
    assert extract_answer("The answer is one hundred and five.") == "105"
    assert is_equivalent(extract_answer("so the answer is three"), "3")
    assert extract_answer("the answer is yes", kind="text") == "yes"  # words stay words outside math


def test_a_closing_verdict_does_not_override_the_last_number():
    assert extract_answer("x = 5 + 3 = 8\nso, our answer is correct.") == "8"
    assert extract_answer("The answer is 42.\nLet me check: 6*7=42.\nSo, our answer is indeed correct.") == "42"
    assert extract_answer("The total is 17.\nThe answer is not wrong.") == "17"
