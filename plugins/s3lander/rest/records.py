"""Selecting values in a JSON page by path: ``albums.items``, ``$.data[0].id``, ``$..items``.

Plain dotted paths (with ``[n]`` indices and an optional ``$.`` prefix) are resolved by a
tiny fast walker, which is what nearly every API needs and costs nothing per page; any other
expression (wildcards, recursive descent, filters) goes to ``jsonpath-ng``, compiled once.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

_SIMPLE = re.compile(r"^(?:\$\.?)?(?:[A-Za-z_][\w-]*|\[\d+\])(?:\.[A-Za-z_][\w-]*|\[\d+\])*$")
_TOKEN = re.compile(r"[A-Za-z_][\w-]*|\[\d+\]")
MISSING: Any = object()


class PathError(ValueError):
    """A JSON path that does not parse."""


class JsonPath:
    """A compiled JSON path; ``find(doc)`` returns the value or ``MISSING``."""

    def __init__(self, expr: str) -> None:
        self.expr = expr.strip()
        if self.expr in ("", "$"):
            self._steps: list[str | int] | None = []
            self._jp = None
        elif _SIMPLE.match(self.expr):
            body = self.expr[1:].lstrip(".") if self.expr.startswith("$") else self.expr
            self._steps = [int(t[1:-1]) if t.startswith("[") else t for t in _TOKEN.findall(body)]
            self._jp = None
        else:
            try:
                from jsonpath_ng.ext import parse
            except ImportError as e:  # pragma: no cover - jsonpath-ng is a runtime requirement
                raise PathError(f"JSON path {expr!r} needs jsonpath-ng") from e
            try:
                self._jp = parse(self.expr)
            except Exception as e:  # noqa: BLE001 - jsonpath-ng raises many types
                raise PathError(f"invalid JSON path {expr!r}: {e}") from e
            self._steps = None

    def find(self, doc: Any) -> Any:
        if self._steps is not None:
            cur = doc
            for step in self._steps:
                if isinstance(step, int):
                    if not isinstance(cur, list) or step >= len(cur):
                        return MISSING
                    cur = cur[step]
                else:
                    if not isinstance(cur, dict) or step not in cur:
                        return MISSING
                    cur = cur[step]
            return cur
        matches = [m.value for m in self._jp.find(doc)]
        if not matches:
            return MISSING
        return matches[0] if len(matches) == 1 and not self.expr.endswith("[*]") else matches

    def __repr__(self) -> str:
        return f"JsonPath({self.expr!r})"


@lru_cache(maxsize=256)
def compile_path(expr: str) -> JsonPath:
    return JsonPath(expr)


def find(doc: Any, expr: str | None, default: Any = None) -> Any:
    """The value at ``expr`` in ``doc``, or ``default`` when absent (``None`` path -> ``default``)."""
    if expr is None:
        return default
    v = compile_path(expr).find(doc)
    return default if v is MISSING else v


class RecordSelectionError(ValueError):
    """A page whose records are not where the config says."""


def select_records(doc: Any, expr: str) -> list[Any]:
    """The list of records at ``expr``: a list as is, a single object as a list of one, null as empty."""
    v = compile_path(expr).find(doc)
    if v is MISSING:
        keys = list(doc)[:10] if isinstance(doc, dict) else type(doc).__name__
        raise RecordSelectionError(f"no records at JSON path {expr!r} (the page has {keys})")
    if v is None:
        return []
    if isinstance(v, list):
        return v
    if isinstance(v, dict):
        return [v]
    raise RecordSelectionError(f"JSON path {expr!r} selects a {type(v).__name__}, not a list of records")
