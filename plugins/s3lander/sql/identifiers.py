"""SQL identifiers from config: validated against a strict pattern, then quoted.

Table and column names come from a YAML file, i.e. from people, so they are never pasted
into SQL as they are: a name must match ``[A-Za-z_][A-Za-z0-9_$]*`` (at most 64 characters,
MySQL's limit) and is then quoted with backticks. Anything else is refused with an error
naming the config key, before any SQL is built.
"""

from __future__ import annotations

import re

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,63}$")


class IdentifierError(ValueError):
    """A table or column name that is not a plain SQL identifier."""


def check_identifier(name: object, *, what: str = "identifier") -> str:
    if not isinstance(name, str) or not _IDENT.match(name):
        raise IdentifierError(f"{what} {name!r} is not a valid SQL identifier "
                              "(letters, digits, '_' or '$', starting with a letter or '_', at most 64 characters)")
    return name


def quote_identifier(name: str, *, what: str = "identifier", quote: str = "`") -> str:
    """``name`` validated and quoted; ``db.table`` is split and each part quoted."""
    parts = name.split(".") if isinstance(name, str) else [name]
    if len(parts) > 2:
        raise IdentifierError(f"{what} {name!r} has more than one '.'; use table or schema.table")
    return ".".join(f"{quote}{check_identifier(p, what=what)}{quote}" for p in parts)
