"""``reasonsift config [SECTION]``: every config key with its default and one-line meaning.

The text is generated from the config dataclasses themselves, so it cannot drift from the code: a
key's meaning is the ``# comment`` written after its field in ``reasonsift/config.py`` (read with
``tokenize``, which knows comments from ``#`` inside strings), and its default is the dataclass
default. ``tests/test_config_help.py`` fails when a field has no comment.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import io
import tokenize
import typing
from typing import Any

from reasonsift.config import CONFIG_SECTIONS, ConfigError


def field_comments(cls: type) -> dict[str, str]:
    """``{field: comment}`` from the ``# ...`` after each field of dataclass ``cls`` ("" when none).

    A field written over several lines (a long ``Literal[...]``) may carry its comment on any of them.
    """
    names = {f.name for f in dataclasses.fields(cls)}
    out = {n: "" for n in names}
    source = inspect.getsource(cls)
    field, depth, first = None, 0, True  # first: at the start of a logical line
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type in (tokenize.NEWLINE, tokenize.NL) and depth == 0:
            if tok.type == tokenize.NEWLINE:
                field, first = None, True
            continue
        if tok.type in (tokenize.INDENT, tokenize.DEDENT):
            continue
        if tok.type == tokenize.COMMENT:
            if field is not None and not out[field]:
                out[field] = tok.string.lstrip("#").strip()
            continue
        if first and tok.type == tokenize.NAME and tok.string in names:
            field = tok.string
        if tok.type == tokenize.OP and tok.string in "([{":
            depth += 1
        elif tok.type == tokenize.OP and tok.string in ")]}":
            depth -= 1
        first = False
    return out


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is typing.Literal:
        return "one of " + "|".join(map(str, typing.get_args(tp)))
    text = getattr(tp, "__name__", None) if isinstance(tp, type) else None
    return text or str(tp).replace("typing.", "")


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(map(str, value)) or "(empty)"
    if isinstance(value, str):
        return repr(value) if (not value or len(value) > 40 or value != value.strip()) else value
    return str(value)


def unknown_section(name: str) -> ConfigError:
    """The error for a section name that does not exist, with the nearest one suggested."""
    near = difflib.get_close_matches(name, list(CONFIG_SECTIONS), n=1)
    hint = f"; did you mean {near[0]}?" if near else ""
    return ConfigError(f"unknown config section '{name}'{hint} (sections: {', '.join(CONFIG_SECTIONS)})")


def format_config_help(section: str | None = None) -> str:
    """The text ``reasonsift config [SECTION]`` prints: per key, ``section.key = default (type)``, then its meaning.

    Raises ConfigError for an unknown section (with the nearest name suggested).
    """
    if section is not None and section not in CONFIG_SECTIONS:
        raise unknown_section(section)
    lines = ["Set a key with section.key=value after a subcommand's arguments, or in a YAML file given",
             "with --config (one mapping per section). Plain key=value works when only one of the",
             "command's sections has that key.", ""]
    for name, cls in CONFIG_SECTIONS.items():
        if section is not None and name != section:
            continue
        doc = (inspect.getdoc(cls) or "").split("\n\n")[0].replace("\n", " ").replace("``", "")
        lines.append(f"{name}:  {doc}")
        comments, hints = field_comments(cls), typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            default = _show(_default(f))
            default = default if len(default) <= 60 else default[:57] + "..."
            lines.append(f"  {name}.{f.name} = {default}    ({_type_name(hints[f.name])})")
            lines.append(f"      {comments[f.name]}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
