"""Final-answer extraction from generations, gold answers from benchmark rows, and answer equivalence.

Extraction follows the conventions of the math evaluation harnesses (Hendrycks' MATH, lm-eval's GSM8K
filters, Qwen2.5-Math): the last ``\\boxed{}`` wins, then a GSM8K ``#### X`` line, then an "answer is X"
phrase, then (multiple choice only) an option letter, then the last number. Equivalence is a cheap
normalised comparison first and ``math-verify`` (symbolic, the ``[math]`` extra) only when that fails.
"""

from __future__ import annotations

import re
import threading
from fractions import Fraction

from reasonsift.config import ANSWER_KINDS as KINDS
from reasonsift.data.marked_answer import after_hashes, last_boxed

GOLD_KEYS = ("answer", "gold", "final_answer", "target", "label")
QUESTION_KEYS = ("question", "problem", "prompt", "instruction", "input")
MAX_VERIFY_CHARS = 1000  # longer strings skip math-verify: sympy can take minutes on them
VERIFY_TIMEOUT_S = 5  # per parse / per comparison (math-verify's default); 2 s timed out on a loaded 2-core CI box

_HASH_RE = re.compile(r"####[ \t]*([^\n]*)")
# "answer is X", "Answer: X", "final answer is: X"; X may sit on the next line ("Final Answer:\n42").
_PHRASE_RE = re.compile(r"answer\s*(?:is\b\s*:?|:)\s*([^\n]*)", re.IGNORECASE)
# A number: thousands groups or plain digits, optional decimals; not glued to a word or another number.
_NUMBER_RE = re.compile(r"(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![\d])|(?<![\w.])-?\.\d+")
_LETTER_RE = re.compile(r"^\(?([A-J])\)?(?:[.:)\s]|$)|^\(([a-j])\)")
_ANY_CASE_LETTER_RE = re.compile(r"^\(?([A-Ja-j])\)?(?:[.:)\s]|$)")
_PAREN_LETTER_RE = re.compile(r"(?<![A-Za-z])\(?([A-J])\)")  # "(B)" or "B)" anywhere
_WORD_RE = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{3,}")  # an English word, not a LaTeX command
_MATH_WORDS = {"sqrt", "frac", "dfrac", "infty", "cdot", "times", "div", "circ", "log", "sin", "cos", "tan"}
# Words before "answer" that make it a verb: "let me answer:", "to answer:", "I will answer:".
_VERB_CONTEXT = {"to", "me", "i", "we", "us", "will", "can", "could", "would", "should", "must", "i'll",
                 "we'll", "let's", "lets"}
# "so, our answer is correct.": a verdict on an answer given earlier, not the answer itself.
_VERDICT_WORDS = {"correct", "incorrect", "right", "wrong", "valid", "invalid", "verified", "confirmed",
                  "consistent", "reasonable", "plausible", "accurate", "fine", "ok", "okay", "good", "sound", "solid"}
_VERDICT_ADVERBS = {"indeed", "definitely", "certainly", "clearly", "probably", "likely", "also", "still", "now",
                    "not", "all", "very", "most", "quite", "surely", "absolutely", "fully", "thus"}
# Spelled-out numbers ("the answer is three"); compound forms as "twenty-five", "one hundred and five".
_UNITS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen".split())}
_TENS = {w: 10 * (i + 2) for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split())}
_JOINING_WORDS = {"and", "or", "to", "through", "plus", "minus", "times", "over", "of"}
_SCALES = {"hundred": 100, "thousand": 1000, "million": 10**6}
# A base written as a subscript: 4343_6, 4343_{6}, 1011_{2}.
_BASE_RE = re.compile(r"([0-9A-Za-z]+)_\{?(\d+)\}?")
# An ordinal suffix on a number: 12^{\text{th}}, 12^{th}, 12th, 1st.
_ORDINAL_RE = re.compile(r"(\d)\s*(?:\^\s*\{?\s*(?:\\text\{\s*)?(?:st|nd|rd|th)\s*\}?\s*\}?|(?:st|nd|rd|th)\b)")
_TEXT_CMD_RE = re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf|mbox|operatorname)\s*\{([^{}]*)\}")


def _clean_span(span: str) -> str:
    """Strip the wrapping a phrase answer carries: ``$...$``, ``\\(...\\)``, bold, trailing period."""
    span = span.strip()
    span = re.split(r"\.(?:\s|$)", span, maxsplit=1)[0]  # end of sentence; "3.5" has no space after its dot
    span = span.strip().strip("*").strip()
    for left, right in (("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if span.startswith(left) and right in span[len(left) :]:
            span = span[len(left) :].split(right, 1)[0]
    return _plain_number(span.strip().rstrip(".,;:!").strip())


def _plain_number(span: str) -> str:
    """``$1,000`` -> ``1000``, ``50%`` -> ``50``; anything that is not one plain number is unchanged."""
    match = re.fullmatch(r"(-?)\$?(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?\s*%?", span)
    return "".join(g or "" for g in match.groups()).replace(",", "") if match else span


def _number_in(text: str, last: bool = True) -> str | None:
    """The last (or first) number in ``text`` with thousands commas dropped; ``$5`` -> 5, ``50%`` -> 50."""
    matches = _NUMBER_RE.findall(text.replace("\u2212", "-"))
    if not matches:
        return None
    return (matches[-1] if last else matches[0]).replace(",", "")


def choice_letter(text: str, any_case: bool = False) -> str | None:
    """The option letter a short answer names: ``B``, ``(B)``, ``B)``, ``\\text{(B)}``, ``(b)``; else None.

    A bare lower-case ``b`` counts only with ``any_case`` (comparing extracted answers): in running
    text "a" is an article, not option A.
    """
    text = _TEXT_CMD_RE.sub(r"\1", text).replace("$", "").strip().strip("*").strip()
    match = (_ANY_CASE_LETTER_RE if any_case else _LETTER_RE).match(text)
    if match:
        return next(g for g in match.groups() if g).upper()
    return None


def _is_word(match: re.Match) -> bool:
    """Whether a ``_WORD_RE`` match is an English word rather than a math name (sqrt, frac, ...)."""
    return match.group(0).lower() not in _MATH_WORDS


def _math_phrase_value(span: str) -> str:
    """The value a math answer phrase states, from a span that holds words besides the answer.

    "3 + 4 = 7 apples" -> "7" (the result after the last ``=``, not the first operand);
    "18 dollars, 2 more than 16" -> "18" (the value stated first, units and remarks after);
    "indeed 12" / "that she has 18 dollars" -> the last number (words before the value).
    """
    tail = span.rsplit("=", 1)[1] if "=" in span else span
    word = next((m for m in _WORD_RE.finditer(tail) if _is_word(m)), None)
    head = (tail[: word.start()] if word else tail).strip().rstrip(",;:(").strip()
    if re.search(r"\d", head):
        plain = _plain_number(head)
        return plain if _NUMBER_RE.fullmatch(plain) else head  # "3*sqrt(13)", "\\frac{1}{2}" stay whole
    return _number_in(tail) or _number_in(span) or span


def number_word_value(span: str) -> str | None:
    """The value of a spelled-out number at the start of ``span`` ("three apples" -> "3"), else None."""
    words = re.findall(r"[a-z]+", span.lower().replace("-", " "))
    total = current = 0
    seen = False
    for word in words:
        if word in _UNITS:
            current += _UNITS[word]
        elif word in _TENS:
            current += _TENS[word]
        elif word in _SCALES and seen:
            if _SCALES[word] == 100:
                current *= 100
            else:
                total, current = total + current * _SCALES[word], 0
        elif word == "and" and seen:
            continue
        else:
            break
        seen = True
    if not seen or not re.match(r"\s*[A-Za-z]", span):
        return None
    return str(total + current)


def _is_verdict(span: str) -> bool:
    """Whether a phrase span judges an answer ("correct", "not right") instead of stating one."""
    words = [w for w in re.findall(r"[a-z']+", span.lower()) if w not in _VERDICT_ADVERBS]
    return bool(words) and words[0] in _VERDICT_WORDS and not re.search(r"\d", span)


def _phrase_answer(text: str, kind: str) -> str | None:
    """The span after the last "answer is" / "answer:"; in math, "18 dollars" becomes "18".

    "answer" used as a verb ("Let me answer: first compute ...") announces working, not a result,
    and "our answer is correct" judges an earlier result; such matches are ignored, so an earlier
    phrase or the later rules (last number) decide. A spelled-out number ("the answer is three")
    is given as digits in math.
    """
    matches = [m for m in _PHRASE_RE.finditer(text)
               if _word_before(text, m.start()) not in _VERB_CONTEXT and not _is_verdict(_clean_span(m.group(1)))]
    if not matches:
        return None
    span = _clean_span(matches[-1].group(1))
    if not span:
        return None
    if kind in ("auto", "math"):
        spelled = number_word_value(span)
        if spelled is not None:
            return spelled
        if any(_is_word(m) for m in _WORD_RE.finditer(span)):
            return _math_phrase_value(span)
        # "3 + 4 = 7": arithmetic on the left of the last "=" means the result is on its right;
        # "y = 2x + 3" stays whole (an equation can be the answer).
        left, sep, right = span.rpartition("=")
        if sep and right.strip() and re.fullmatch(r"[\d\s+\-*/×÷().,^]+", left):
            return _plain_number(right.strip())
    return span


def _word_before(text: str, pos: int) -> str:
    """The lower-cased word just before ``pos`` ("" at the start of the text)."""
    match = re.search(r"([A-Za-z']+)\s*$", text[:pos])
    return match.group(1).lower() if match else ""


def extract_answer(text: str, kind: str = "auto") -> str | None:
    """The final answer in a model generation, or None when there is none (an empty generation).

    Priority: the last ``\\boxed{}``/``\\fbox{}``, a ``#### X`` line, "answer is X"/"Answer: X", then for
    ``kind="choice"`` an option letter (returned upper-case, e.g. ``"B"``), else (math/auto) the last
    number (``1,000`` -> ``1000``, ``$5`` -> ``5``, ``50%`` -> ``50``). ``kind="text"`` stops after the
    phrase: a last number says nothing about a yes/no or free-text answer.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown answer kind {kind!r}; expected one of {KINDS}")
    if not text or not text.strip():
        return None
    text = text.replace("\u2212", "-")  # a Unicode minus would hide the sign of a negative number
    boxed = last_boxed(text)
    hashed = [m for m in _HASH_RE.findall(text) if _clean_span(m)]
    candidates = [boxed and _plain_number(boxed), _clean_span(hashed[-1]) if hashed else None]
    candidates.append(_phrase_answer(text, kind))
    for candidate in candidates:
        if not candidate:
            continue
        if kind != "choice":
            return _TEXT_CMD_RE.sub(r"\1", candidate).strip() if kind == "text" else candidate
        letter = choice_letter(candidate)
        if letter:
            return letter
    if kind == "choice":
        letters = _PAREN_LETTER_RE.findall(text)
        return letters[-1] if letters else None
    if kind == "text":
        return None
    return _number_in(text)


def gold_answer(row: dict) -> str:
    """The gold answer of a benchmark row, as a string.

    The first present, non-empty of ``answer``, ``gold``, ``final_answer``, ``target``, ``label``
    (GSM8K's ``answer`` -> the text after ``####``; a value holding a ``\\boxed{}`` gives the boxed
    content), else MATH's ``solution`` -> its last ``\\boxed{}``. An answer column wins over the
    solution's box: competition solutions can end in another box (``\\textbf{(073)}``) than the
    answer. Raises ValueError naming the keys tried, or when a GSM8K answer has nothing after ``####``.
    """
    answer = row.get("answer")
    gold = after_hashes(answer) if isinstance(answer, str) else None
    if gold is not None:
        if not gold:
            # Falling through would make the literal "####" the gold answer.
            raise ValueError("GSM8K-style answer has '####' with no final answer after it")
        return gold
    for key in GOLD_KEYS:
        value = row.get(key)
        if value is None or isinstance(value, (list, dict)):
            continue
        value = str(value).strip()
        if "\\boxed" in value or "\\fbox" in value:
            value = last_boxed(value) or ""
        if value:
            return value
    solution = row.get("solution")
    if isinstance(solution, str):
        boxed = last_boxed(solution)
        if boxed:
            return boxed
    tried = ", ".join(["answer (after ####)", *GOLD_KEYS, "solution (last \\boxed{})"])
    raise ValueError(f"no gold answer field (tried {tried}); row has keys {sorted(row)}")


def question_text(row: dict) -> str:
    """The question of a benchmark row: the first present, non-empty of ``QUESTION_KEYS``."""
    for key in QUESTION_KEYS:
        value = row.get(key)
        if isinstance(value, str) and value.strip():
            return value
    raise ValueError(f"no question field (tried {', '.join(QUESTION_KEYS)}); row has keys {sorted(row)}")


def normalize_answer(answer: str) -> str:
    """A canonical string for comparison: no ``$``, spaces, ``\\text{}``, ``\\!``, units of %/°, or
    thousands commas; ``\\dfrac12`` -> ``\\frac{1}{2}``; a leading ``x =`` dropped."""
    s = answer.strip().replace("\u2212", "-")
    for _ in range(3):  # \text{} may be nested in \textbf{} etc.
        s = _TEXT_CMD_RE.sub(r"\1", s)
    for token in ("\\!", "\\,", "\\;", "\\:", "\\ ", "\\left", "\\right", "\\displaystyle", "\\%", "%", "\\$", "$"):
        s = s.replace(token, "")
    s = re.sub(r"\^\s*\{?\\circ\}?", "", s)
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = re.sub(r"\\frac\s*(\d)\s*(\d)", r"\\frac{\1}{\2}", s)  # \frac12
    s = re.sub(r"\\frac\{([^{}]*)\}\s*(\d)", r"\\frac{\1}{\2}", s)  # \frac{1}2
    s = re.sub(r"\\sqrt\s*(\d)", r"\\sqrt{\1}", s)
    s = re.sub(r"\s+", "", s).rstrip(".")
    s = re.sub(r"^[A-Za-z]{1,2}=(?!=)", "", s)  # "x=5" -> "5", as Hendrycks' strip_string
    if re.fullmatch(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?", s):
        s = s.replace(",", "")
    return s


def _with_base(s: str) -> tuple[str, int, bool] | None:
    """(digits, base, written) of a normalised number with an optional base subscript, else None."""
    match = _BASE_RE.fullmatch(s)
    digits, base, written = (match.group(1), int(match.group(2)), True) if match else (s, 10, False)
    if not 2 <= base <= 36 or not re.fullmatch(r"[0-9A-Za-z]+", digits):
        return None
    if any(int(c, 36) >= base for c in digits):
        return None
    return digits.upper().lstrip("0") or "0", base, written


def _same_in_base(pred: str, gold: str) -> bool | None:
    """With a base subscript on either side: same digits in the same base (no subscript = base 10).

    None when neither side has one (or either is not a number in its base): the caller decides.
    """
    a, b = _with_base(pred), _with_base(gold)
    if a is None or b is None or not (a[2] or b[2]):
        return None
    return a[:2] == b[:2]


def _number_with_units(answer: str) -> str | None:
    """The number of "12^{\\text{th}}\\text{ grade}" / "5 apples": a number, then only words; else None."""
    s = _ORDINAL_RE.sub(r"\1", answer.replace("$", ""))
    for _ in range(3):
        s = _TEXT_CMD_RE.sub(r" \1 ", s)
    match = re.fullmatch(r"\s*(-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?)\s+([A-Za-z][A-Za-z\s]*)", s)
    words = [w.lower() for w in match.group(2).split()] if match else []
    if not match or len(words) > 3 or any(w in _MATH_WORDS or w in _JOINING_WORDS for w in words):
        return None  # "2 and 3" is two answers, "3 times 4" an expression
    return normalize_answer(match.group(1))


def _to_number(s: str) -> Fraction | None:
    """Exact value of a normalised plain number, ``a/b`` or ``\\frac{a}{b}``; None otherwise."""
    match = re.fullmatch(r"(-?)\\frac\{(-?\d+)\}\{(-?\d+)\}", s)
    if match:
        s = f"{match.group(1)}{match.group(2)}/{match.group(3)}"
    if not re.fullmatch(r"-?(?:\d+(?:\.\d*)?|\.\d+)(?:/-?\d+)?", s):
        return None
    numerator, _, denominator = s.partition("/")
    try:
        return Fraction(numerator) / Fraction(denominator or "1")
    except (ValueError, ZeroDivisionError):
        return None


def _text_key(s: str) -> str:
    """Case- and punctuation-insensitive form of a free-text answer ("Sentence A." == "sentence a")."""
    s = _TEXT_CMD_RE.sub(r"\1", s).replace("$", "")
    return " ".join(s.lower().strip().strip("\"'.,!?*:;()").split())


def _resolve_kind(gold: str, kind: str) -> str:
    """``auto``: a bare option letter is choice, plain words are text, anything else is math."""
    if kind != "auto":
        return kind
    stripped = _TEXT_CMD_RE.sub(r"\1", gold).replace("$", "").strip()
    if re.fullmatch(r"\(?[A-J]\)?|\([a-j]\)", stripped):
        return "choice"
    # words with single separators and one word of 2+ letters: "yes", "Sentence A", "Evelyn"; not "p - q"
    if re.fullmatch(r"[A-Za-z]+(?:[ '\-][A-Za-z]+)*", stripped) and re.search(r"[A-Za-z]{2,}", stripped):
        return "text"
    return "math"


def _math_verify_equal(pred: str, gold: str) -> bool:
    """Symbolic equivalence via math-verify; timeouts only work (signal.alarm) on the main thread."""
    try:
        from math_verify import parse, verify
    except ImportError as e:
        raise ImportError("math answer checking needs math-verify: pip install 'reasonsift[math]'") from e
    if len(pred) > MAX_VERIFY_CHARS or len(gold) > MAX_VERIFY_CHARS:
        return False
    timeout = VERIFY_TIMEOUT_S if threading.current_thread() is threading.main_thread() else None
    try:
        # Wrapping in \boxed{} makes math-verify read the whole string as one LaTeX answer.
        gold_parsed = parse(f"\\boxed{{{gold.replace('$', '')}}}", parsing_timeout=timeout)
        pred_parsed = parse(f"\\boxed{{{pred.replace('$', '')}}}", parsing_timeout=timeout)
        if not gold_parsed or not pred_parsed:
            return False
        return bool(verify(gold_parsed, pred_parsed, timeout_seconds=timeout))
    except Exception:  # math-verify or sympy failing on odd input means "not shown equal"
        return False


def is_equivalent(pred: str | None, gold: str, kind: str = "auto") -> bool:
    """Whether a predicted answer equals the gold answer; never raises on odd answers.

    Choice: same option letter, case-insensitive. Text: same words, case-insensitive. Math: equal
    after ``normalize_answer`` (so ``1,000`` == ``1000``, ``0.50`` == ``0.5``, ``\\frac{1}{2}`` ==
    ``1/2`` == ``\\dfrac12``), else equal by math-verify (ImportError without the ``[math]`` extra).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown answer kind {kind!r}; expected one of {KINDS}")
    if pred is None or gold is None:
        return False
    pred, gold = str(pred), str(gold)
    try:
        kind = _resolve_kind(gold, kind)
        if kind == "choice":
            gold_letter = choice_letter(gold, any_case=True)
            if gold_letter is not None:
                return choice_letter(pred, any_case=True) == gold_letter
            kind = "text"  # a choice benchmark whose gold is the option text
        if kind == "text":
            return bool(_text_key(gold)) and _text_key(pred) == _text_key(gold)
        norm_pred, norm_gold = normalize_answer(pred), normalize_answer(gold)
        if not norm_pred or not norm_gold:
            return False
        based = _same_in_base(norm_pred, norm_gold)
        if based is not None:  # a base subscript decides alone: 4343_6 is not 4343
            return based
        if norm_pred == norm_gold:
            return True
        pred_number, gold_number = _number_with_units(pred), _number_with_units(gold)
        if (pred_number or gold_number) and (pred_number or norm_pred) == (gold_number or norm_gold):
            return True  # "12^{\\text{th}}\\text{ grade}" == "12"
        num_pred, num_gold = _to_number(norm_pred), _to_number(norm_gold)
        if num_pred is not None and num_gold is not None:
            # 1e-6 relative, as math-verify's float_rounding=6: "0.333333" == "1/3"
            return abs(num_pred - num_gold) <= Fraction(1, 10**6) * max(1, abs(num_gold))
    except Exception:  # odd strings must not crash an evaluation run
        return bool(gold.strip()) and pred.strip() == gold.strip()
    return _math_verify_equal(pred, gold)

