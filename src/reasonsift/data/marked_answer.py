"""Final answers marked inside a text: the last ``\\boxed{...}`` and GSM8K's ``#### X`` line.

One parser for the loader (an input row's gold answer) and the grader (gold answers of benchmark
rows, final answers of generations), so a row's answer reads the same in every stage.
"""

from __future__ import annotations

import re

BOX_RE = re.compile(r"\\(?:boxed|fbox)")
_BRACE_DEPTH = {"{": 1, "}": -1}


def last_boxed(text: str) -> str | None:
    """Content of the last complete, non-empty ``\\boxed{...}`` / ``\\fbox{...}`` (or ``\\boxed 5``)."""
    for match in reversed(list(BOX_RE.finditer(text))):
        i = match.end()
        while i < len(text) and text[i] == " ":
            i += 1
        if i < len(text) and text[i] == "{":
            depth = 0
            for j in range(i, len(text)):
                depth += _BRACE_DEPTH.get(text[j], 0)
                if depth == 0:
                    content = text[i + 1 : j].strip()
                    if content:
                        return content
                    break
            # unbalanced (a truncated generation) or empty: try the box before it
        elif i > match.end():  # "\boxed 5": the token after the space
            token = re.match(r"[^\s$]+", text[i:])
            if token:
                return token.group(0)
    return None


def after_hashes(text: str) -> str | None:
    """The text after the last ``####`` (GSM8K's final-answer line), stripped; None without one."""
    return text.rsplit("####", 1)[1].strip() if "####" in text else None


def marked_answer(text: str) -> str:
    """The final answer a worked solution marks: after ``####``, else its last box; "" when none."""
    hashed = after_hashes(text)
    return hashed if hashed is not None else last_boxed(text) or ""
