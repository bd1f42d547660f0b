"""Map each row of an SFT pool to an ``Example``: which columns are the prompt, response, answer.

Rows are read by ``data.formats.iter_rows`` (.jsonl[.gz], .json, .parquet, FLAN .tsv, a
``save_to_disk`` folder or a hub id, streamed); ``iter_examples`` is the one entry point stages use.

Schemas recognised, per row (the first that fits wins; ``--field name=COL`` beats detection):

- prompt/question/problem/instruction/query + reasoning/thinking/thinking_trajectories/
  reasoning_content/rationale + answer/solution/distilled_answer_string/attempt (M23K, s1K, ...):
  the response is the reasoning, a blank line, then the answer;
- prompt/question/problem/instruction + response/completion/output/solution/answer (GSM8K keeps its
  ``#### N`` line in the response; MATH's ``solution`` is the response, its ``\\boxed{}`` the answer);
- chat ``messages`` (role/content) and ShareGPT ``conversations`` (from/value, as OpenThoughts):
  the last user turn is the prompt, the assistant turn after it the response.

``source``/``domain`` come from columns of those names, else every row is in group "default".
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from reasonsift.data.formats import RawRow, iter_rows
from reasonsift.data.marked_answer import marked_answer
from reasonsift.data.records import BadRow, DataError, Example

logger = logging.getLogger(__name__)

PROMPT_KEYS = ("prompt", "question", "problem", "instruction", "query", "input")
REASONING_KEYS = ("reasoning", "thinking", "thinking_trajectories", "reasoning_content", "rationale", "cot")
FINAL_KEYS = ("distilled_answer_string", "attempt", "answer", "solution", "final_answer")
RESPONSE_KEYS = ("response", "completion", "output", "solution", "answer", "distilled_answer_string", "attempt")
GOLD_COLUMNS = ("answer", "final_answer", "gold")  # a gold final answer beside a response column
# The one list of id columns (benchmarks use it too, so a row has the same id in every stage).
ID_KEYS = ("id", "unique_id", "uid", "example_id", "question_id", "problem_id", "idx")
CHAT_KEYS = ("messages", "conversations")
ROLE_ALIASES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                "system": "system", "model": "assistant", "bot": "assistant"}
LONG_TEXT_CHARS = 200  # an unassigned text column this long may be the response detection did not pick
FIELD_NAMES = ("id", "prompt", "response", "reasoning", "answer", "source", "domain", "messages")


def parse_field_overrides(items: tuple[str, ...] | list[str]) -> dict[str, str]:
    """``("prompt=question", ...)`` -> ``{"prompt": "question"}``, checking the names."""
    out = {}
    for item in items:
        name, sep, column = item.partition("=")
        if not sep or not column:
            raise DataError(f"--field {item!r}: expected NAME=COLUMN")
        if name not in FIELD_NAMES:
            raise DataError(f"--field {item!r}: NAME must be one of {', '.join(FIELD_NAMES)}")
        out[name] = column
    return out


def _text(value: Any, key: str, numbers: bool = False) -> str:
    """A field as text: strings as they are, lists of strings joined by newlines (both documented
    formats); a number only where ``numbers`` allows it (a final answer such as GSM8K's 42). A number
    or a bool as a prompt or response is a wrong column, not text: a bad row."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "\n".join(value)
    if numbers and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise BadRow(f"field '{key}' is {type(value).__name__}, expected text")


def coercions(row: dict[str, Any], schema: dict[str, str]) -> list[str]:
    """The fields of a row that were converted to become text (lists of strings joined by newlines,
    numbers as the final answer), named by column; stages count and report them."""
    out = []
    for role, column in schema.items():
        value = row.get(column)
        if role in ("prompt", "response", "reasoning", "answer") and isinstance(value, list):
            out.append(f"{column}: list of strings joined by newlines")
        elif role == "answer" and isinstance(value, (int, float)) and not isinstance(value, bool):
            out.append(f"{column}: number written as text")
        elif role == "messages" and isinstance(value, list) and any(
                isinstance(t, dict) and isinstance(t.get("content", t.get("value")), list) for t in value):
            out.append(f"{column}: turn content list joined by newlines")
    return out


def count_coercions(coerced: dict[str, Any], raw: RawRow, fields: list[str]) -> None:
    """Add one row's ``coercions`` to a stage's tally: ``{"rows", "fields": {what: rows}, "example"}``."""
    if not fields:
        return
    coerced["rows"] = coerced.get("rows", 0) + 1
    for what in fields:
        coerced.setdefault("fields", {})[what] = coerced.get("fields", {}).get(what, 0) + 1
    coerced.setdefault("example", raw.where)


def warn_coercions(coerced: dict[str, Any], data: str | Path) -> None:
    """One console line when rows had fields converted to text (the same figures go to report.json)."""
    if coerced.get("rows"):
        what = "; ".join(f"{k} ({v} rows)" for k, v in coerced["fields"].items())
        logger.warning("%s: %d rows had fields converted to text: %s; e.g. %s", data, coerced["rows"], what,
                       coerced["example"])


def _required(row: dict[str, Any], key: str, numbers: bool = False) -> str:
    if key not in row or row[key] is None:
        raise BadRow(f"missing field '{key}'")
    text = _text(row[key], key, numbers)
    if not text.strip():
        raise BadRow(f"empty field '{key}'")
    return text


def _from_chat(turns: Any, key: str) -> tuple[str, str, str | None]:
    """(prompt, response, system) from a messages / conversations list."""
    if not isinstance(turns, list) or not turns:
        raise BadRow(f"field '{key}' is not a non-empty list of turns")
    norm = []
    for t in turns:
        if not isinstance(t, dict):
            raise BadRow(f"field '{key}' holds a {type(t).__name__}, expected turn objects")
        role = t.get("role", t.get("from"))
        content = t.get("content", t.get("value"))
        if role not in ROLE_ALIASES or content is None:
            raise BadRow(f"field '{key}' has a turn without a known role/content")
        norm.append((ROLE_ALIASES[role], _text(content, key)))
    last_assistant = max((i for i, (r, _) in enumerate(norm) if r == "assistant"), default=None)
    if last_assistant is None:
        raise BadRow(f"field '{key}' has no assistant turn")
    users = [i for i, (r, _) in enumerate(norm[:last_assistant]) if r == "user"]
    if not users:
        raise BadRow(f"field '{key}' has no user turn before the assistant turn")
    system = next((c for r, c in norm if r == "system"), None)
    prompt, response = norm[users[-1]][1], norm[last_assistant][1]
    if not prompt.strip():
        raise BadRow(f"field '{key}' has an empty user turn")
    if not response.strip():
        raise BadRow(f"field '{key}' has an empty assistant turn")
    return prompt, response, system


def _first(row: dict[str, Any], keys: tuple[str, ...]) -> str | None:
    """The first of ``keys`` holding a value; else the first present at all (None), so that the
    row is then reported as missing that field rather than as an unknown schema."""
    return (next((k for k in keys if k in row and row[k] is not None), None)
            or next((k for k in keys if k in row), None))


def detect_schema(row: dict[str, Any], fields: dict[str, str] | None = None) -> dict[str, str]:
    """Which column plays which role (``prompt``, ``response`` or ``reasoning`` + ``answer``,
    ``messages``, ``id``) in a row: ``--field`` overrides first, then detection by column name.

    ``iter_examples`` detects once, on the first good row, and holds every later row to that
    schema: a row without the reasoning schema's answer column must be an error, not a response
    silently scored on the reasoning alone.
    """
    fields = dict(fields or {})
    chat_key = fields.get("messages") or _first(row, CHAT_KEYS)
    if "prompt" not in fields and chat_key is not None and (isinstance(row.get(chat_key), list)
                                                             or "messages" in fields):
        schema = {"messages": chat_key}
    else:
        prompt_key = fields.get("prompt") or _first(row, PROMPT_KEYS)
        if prompt_key is None:
            raise BadRow(f"unknown schema: no prompt column among {', '.join(PROMPT_KEYS + CHAT_KEYS)} "
                         f"(columns: {', '.join(sorted(row))}); pass --field prompt=COL")
        schema = {"prompt": prompt_key}
        reasoning_key = fields.get("reasoning") or (None if "response" in fields else _first(row, REASONING_KEYS))
        if reasoning_key is not None:
            schema["reasoning"] = reasoning_key
            final_key = fields.get("answer") or _first(row, FINAL_KEYS)
            if final_key:
                schema["answer"] = final_key
        else:
            response_key = fields.get("response") or _first(row, tuple(k for k in RESPONSE_KEYS if k != prompt_key))
            if response_key is None:
                raise BadRow(f"unknown schema: no response column among {', '.join(RESPONSE_KEYS)} "
                             f"(columns: {', '.join(sorted(row))}); pass --field response=COL")
            schema["response"] = response_key
    id_key = fields.get("id") or _first(row, ID_KEYS)
    if id_key is not None:
        schema["id"] = id_key
    for name in ("answer", "source", "domain"):
        if name in fields:
            schema[name] = fields[name]
    if "answer" not in schema:
        # An optional gold-answer column beside the response ({prompt, response, answer}): Example.answer
        # for stages that check answers (critical). Optional: a later row without it is still good.
        used = set(schema.values())
        gold_key = fields.get("gold") or next((k for k in GOLD_COLUMNS if k in row and k not in used), None)
        if gold_key is not None:
            schema["gold"] = gold_key
    return schema


def other_response_columns(row: dict[str, Any], schema: dict[str, str],
                           fields: dict[str, str] | None = None) -> list[str]:
    """Columns that could also be the response detection chose (none when ``--field`` chose it).

    A SkyThought output row has ``question``, ``solution`` (a reference) and ``code`` (the model's
    long trace): detection takes ``solution`` by name, but ``code`` is as plausible. Plausible: a
    known response name, or any other text column of ``LONG_TEXT_CHARS`` or more.
    """
    if "response" not in schema or "response" in (fields or {}):
        return []
    used = set(schema.values()) | {"source", "domain"}
    return [k for k, v in row.items() if k not in used and isinstance(v, str) and v.strip()
            and (k in RESPONSE_KEYS or len(v) >= LONG_TEXT_CHARS)]


def input_schema(source: str | Path, fields: dict[str, str] | None = None, split: str = "train") -> dict[str, Any]:
    """Which column plays which role, as ``iter_examples`` will map them (from the first good row).

    ``{"columns": {role: column}, "other_response_columns": [...]}``; stages record it in their
    report, so a run says what it read as prompt and response.
    """
    for raw in iter_rows(source, split):
        if raw.row is None:
            continue
        try:
            to_example(raw, fields)
        except BadRow:
            continue
        schema = detect_schema(raw.row, fields)
        return {"columns": schema, "other_response_columns": other_response_columns(raw.row, schema, fields)}
    return {"columns": {}, "other_response_columns": []}


def _say_choice(source: str | Path, row: dict[str, Any], schema: dict[str, str], fields: dict[str, str] | None) -> None:
    """Warn when detection chose the response among several plausible columns."""
    others = other_response_columns(row, schema, fields)
    if others:
        chars = ", ".join(f"'{k}' ({len(row[k]):,} chars)" for k in others)
        logger.warning("%s: read column '%s' (%s chars) as the response; %s could also be it. Pass --field "
                       "response=COLUMN to choose (report.json records the columns read)", source,
                       schema["response"], f"{len(_text(row[schema['response']], schema['response'])):,}", chars)


def to_example(raw: RawRow, fields: dict[str, str] | None = None) -> Example:
    """Map one parsed row to an Example, or raise BadRow with a one-line reason.

    ``fields``: a schema from ``detect_schema`` (or ``--field`` overrides, completed by detection).
    """
    if raw.row is None:
        raise BadRow(raw.error or "unreadable row")
    row = raw.row
    schema = detect_schema(row, fields)
    system, answer = None, ""
    if "messages" in schema:
        prompt, response, system = _from_chat(row.get(schema["messages"]), schema["messages"])
    else:
        prompt = _required(row, schema["prompt"])
        if schema["prompt"] == "instruction" and isinstance(row.get("input"), str) and row["input"].strip():
            prompt = f"{prompt}\n\n{row['input']}"  # Alpaca: the input belongs to the prompt
        if "reasoning" in schema:
            reasoning = _required(row, schema["reasoning"])
            answer = _required(row, schema["answer"], numbers=True) if "answer" in schema else ""
            response = f"{reasoning}\n\n{answer}" if answer else reasoning
        else:
            response = _required(row, schema["response"])
    if "answer" in schema and not answer:
        answer = _required(row, schema["answer"], numbers=True)
    gold = row.get(schema["gold"]) if "gold" in schema else None
    if not answer and gold is not None and not isinstance(gold, (list, dict)):
        answer = str(gold).strip()
    answer = answer or marked_answer(response)
    if "id" in schema:
        if row.get(schema["id"]) is None:
            raise BadRow(f"missing field '{schema['id']}'")
        example_id = str(row[schema["id"]])
    else:
        # Content hash, not position: ids must survive re-ordering and filtering of the input.
        example_id = hashlib.sha1(f"{prompt}\x00{response}".encode()).hexdigest()[:16]
    group = {}
    for name in ("source", "domain"):
        value = row.get(schema.get(name, name))
        group[name] = str(value) if value not in (None, "") else "default"
    return Example(id=example_id, prompt=prompt, response=response, source=group["source"],
                   domain=group["domain"], answer=str(answer), system=system, row_index=raw.index)


def _other_schema(raw: RawRow, schema: dict[str, str] | None, fields: dict[str, str] | None) -> str | None:
    """When a row is bad only because it has another schema than the first good row (mixed inputs), say
    so, naming both; None when the row fits no schema either (its own reason is then the clearest)."""
    if schema is None or raw.row is None:
        return None
    try:
        own = detect_schema(raw.row, fields)
        to_example(raw, own)
    except BadRow:
        return None
    if own == schema:
        return None

    def describe(s: dict[str, str]) -> str:
        return ", ".join(f"{k}={v}" for k, v in s.items() if k not in ("id", "gold"))

    return (f"this row has another schema ({describe(own)}) than the first good row ({describe(schema)}); "
            "one input must use one schema (split the file, or map columns with --field)")


def iter_examples(source: str | Path, fields: dict[str, str] | None = None, split: str = "train",
                  skip_bad_rows: bool = False, limit: int | None = None,
                  coerced: dict[str, Any] | None = None,
                  ) -> Iterator[tuple[RawRow, Example | None, str | None]]:
    """Stream ``(raw_row, example, reason)``; ``example`` is None for a bad row.

    Without ``skip_bad_rows`` the first bad row raises ``DataError`` naming file, line and problem.
    Duplicate ids get a ``#2``, ``#3`` suffix (identical rows stay distinct examples). Rows whose
    fields were converted to text are tallied in ``coerced`` when given (``count_coercions``).
    """
    seen: dict[str, int] = {}
    schema: dict[str, str] | None = None
    for n, raw in enumerate(iter_rows(source, split)):
        if limit is not None and n >= limit:
            break
        try:
            ex = to_example(raw, schema or fields)
            if schema is None:  # the first good row fixes the schema for the rest of the input
                schema = detect_schema(raw.row, fields)  # type: ignore[arg-type]
                _say_choice(source, raw.row, schema, fields)  # type: ignore[arg-type]
            if coerced is not None:
                count_coercions(coerced, raw, coercions(raw.row, detect_schema(raw.row, schema)))  # type: ignore[arg-type]
        except BadRow as e:
            other = _other_schema(raw, schema, fields)
            e = BadRow(f"{e}: {other}" if other else str(e))
            if not skip_bad_rows:
                raise DataError(f"{raw.where}: {e} (use --skip-bad-rows to quarantine bad rows)") from None
            yield raw, None, str(e)
            continue
        count = seen.get(ex.id, 0) + 1
        seen[ex.id] = count
        if count > 1:
            ex = Example(**{**ex.__dict__, "id": f"{ex.id}#{count}"})
        yield raw, ex, None
