"""Pagination styles as small strategy classes sharing one contract (as dlt's paginators do).

A paginator sets up the first request (``init_request``), reads each response
(``update_state``: decides ``has_next`` by its explicit stop rule) and rewrites the request
for the next page (``update_request``). ``advance`` runs both and enforces the max-pages
guard: reaching ``max_pages`` while the API still says "more" is an error, never a silent
truncation. ``state()``/``restore()`` carry what a resumed run needs to continue exactly
where a failed attempt stopped. ``PAGINATORS`` maps config names to classes.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import urljoin

from s3lander.rest.records import find


class PaginationError(RuntimeError):
    """The API's paging cannot be followed safely (loop, runaway, inconsistent answer)."""


@dataclass
class PageRequest:
    """What to send for one page: absolute URL and query parameters (no credentials)."""

    url: str
    params: dict[str, Any] = field(default_factory=dict)
    method: str = "GET"

    def to_dict(self) -> dict[str, Any]:
        return {"url": self.url, "params": dict(self.params), "method": self.method}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PageRequest:
        return cls(url=d["url"], params=dict(d.get("params") or {}), method=d.get("method", "GET"))


@dataclass
class PageResponse:
    """What a paginator may look at: the URL answered, headers, the parsed body, the records."""

    url: str
    headers: Mapping[str, str]
    body: Any
    records: Sequence[Any]


class Paginator(ABC):
    """Base: page counting, the max-pages guard and state for resumes."""

    name: ClassVar[str]

    def __init__(self, *, max_pages: int = 100_000) -> None:
        if max_pages < 1:
            raise ValueError(f"max_pages must be >= 1, got {max_pages}")
        self.max_pages = max_pages
        self.pages = 0
        self.has_next = True

    def init_request(self, request: PageRequest) -> None:
        """Set the first page's parameters (default: leave the request as configured)."""

    @abstractmethod
    def update_state(self, response: PageResponse) -> None:
        """Read one response; set ``has_next`` by the stop rule."""

    @abstractmethod
    def update_request(self, request: PageRequest) -> None:
        """Point ``request`` at the next page (only called when ``has_next``)."""

    def advance(self, response: PageResponse, request: PageRequest) -> None:
        self.pages += 1
        self.update_state(response)
        if not self.has_next:
            return
        if self.pages >= self.max_pages:
            raise PaginationError(
                f"{self.name} paginator reached max_pages={self.max_pages} at {response.url} and the API reports "
                "more pages; raise max_pages or narrow the window (nothing was published)")
        self.update_request(request)

    def state(self) -> dict[str, Any]:
        return {"pages": self.pages, "has_next": self.has_next, **self._state()}

    def restore(self, state: Mapping[str, Any]) -> None:
        self.pages, self.has_next = int(state["pages"]), bool(state["has_next"])
        self._restore(state)

    def _state(self) -> dict[str, Any]:
        return {}

    def _restore(self, state: Mapping[str, Any]) -> None:
        pass


class SinglePage(Paginator):
    """No pagination: one request. Stop rule: always after the first page."""

    name = "single_page"

    def update_state(self, response: PageResponse) -> None:
        self.has_next = False

    def update_request(self, request: PageRequest) -> None:  # pragma: no cover - never called
        raise AssertionError("single page")


class OffsetPaginator(Paginator):
    """``offset``/``limit`` query parameters.

    Stop rule: the offset reached the total at ``total_path`` when there is one; otherwise a
    page shorter than ``limit``; always on an empty page.
    """

    name = "offset"

    def __init__(self, *, limit: int, offset: int = 0, offset_param: str = "offset", limit_param: str = "limit",
                 total_path: str | None = None, max_pages: int = 100_000) -> None:
        super().__init__(max_pages=max_pages)
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        self.limit, self.offset = limit, offset
        self.offset_param, self.limit_param, self.total_path = offset_param, limit_param, total_path
        self.total: int | None = None

    def init_request(self, request: PageRequest) -> None:
        request.params[self.offset_param] = self.offset
        request.params[self.limit_param] = self.limit

    def update_state(self, response: PageResponse) -> None:
        n = len(response.records)
        self.offset += self.limit
        total = find(response.body, self.total_path)
        if self.total_path is not None and total is None:
            raise PaginationError(f"no total at {self.total_path!r} in the page of {response.url}")
        self.total = None if total is None else int(total)
        if n == 0:
            self.has_next = False
        elif self.total is not None:
            self.has_next = self.offset < self.total
        else:
            self.has_next = n >= self.limit

    def update_request(self, request: PageRequest) -> None:
        request.params[self.offset_param] = self.offset

    def _state(self) -> dict[str, Any]:
        return {"offset": self.offset}

    def _restore(self, state: Mapping[str, Any]) -> None:
        self.offset = int(state["offset"])


class PageNumberPaginator(Paginator):
    """``page`` (and optionally ``page_size``) query parameters.

    Stop rule: the page number reached the total pages at ``total_pages_path`` when there is
    one; otherwise a page shorter than ``page_size`` (when known); always on an empty page.
    """

    name = "page_number"

    def __init__(self, *, page: int = 1, page_param: str = "page", page_size: int | None = None,
                 page_size_param: str = "page_size", total_pages_path: str | None = None,
                 max_pages: int = 100_000) -> None:
        super().__init__(max_pages=max_pages)
        self.page, self.page_param = page, page_param
        self.page_size, self.page_size_param, self.total_pages_path = page_size, page_size_param, total_pages_path

    def init_request(self, request: PageRequest) -> None:
        request.params[self.page_param] = self.page
        if self.page_size:
            request.params[self.page_size_param] = self.page_size

    def update_state(self, response: PageResponse) -> None:
        n = len(response.records)
        total_pages = find(response.body, self.total_pages_path)
        if self.total_pages_path is not None and total_pages is None:
            raise PaginationError(f"no total pages at {self.total_pages_path!r} in the page of {response.url}")
        if n == 0:
            self.has_next = False
        elif total_pages is not None:
            self.has_next = self.page < int(total_pages)
        elif self.page_size:
            self.has_next = n >= self.page_size
        else:
            self.has_next = True  # stop on the first empty page
        self.page += 1

    def update_request(self, request: PageRequest) -> None:
        request.params[self.page_param] = self.page

    def _state(self) -> dict[str, Any]:
        return {"page": self.page}

    def _restore(self, state: Mapping[str, Any]) -> None:
        self.page = int(state["page"])


class _UrlFollower(Paginator):
    """Shared by the next-URL styles: follow an absolute or relative URL; refuse loops."""

    def __init__(self, *, max_pages: int = 100_000) -> None:
        super().__init__(max_pages=max_pages)
        self.next_url: str | None = None
        self._seen: set[str] = set()

    def _follow(self, response: PageResponse, nxt: Any) -> None:
        if not nxt:
            self.has_next, self.next_url = False, None
            return
        url = urljoin(response.url, str(nxt))
        if url in self._seen or url == response.url:
            raise PaginationError(f"{self.name} paginator: the API sent the same next URL twice ({url}); "
                                  "stopping instead of looping")
        self._seen.add(response.url)
        self.has_next, self.next_url = True, url

    def update_request(self, request: PageRequest) -> None:
        assert self.next_url is not None
        request.url, request.params = self.next_url, {}  # the next URL carries every query parameter

    def _state(self) -> dict[str, Any]:
        return {"next_url": self.next_url}

    def _restore(self, state: Mapping[str, Any]) -> None:
        self.next_url = state.get("next_url")


class JSONLinkPaginator(_UrlFollower):
    """The next page's URL is in the body at ``next_url_path`` (e.g. ``albums.next``).

    Stop rule: the value is missing, null or empty.
    """

    name = "json_link"

    def __init__(self, *, next_url_path: str = "next", max_pages: int = 100_000) -> None:
        super().__init__(max_pages=max_pages)
        self.next_url_path = next_url_path

    def update_state(self, response: PageResponse) -> None:
        self._follow(response, find(response.body, self.next_url_path))


_LINK = re.compile(r"<([^>]*)>\s*((?:;\s*[^;,]+)*)")
_PARAM = re.compile(r';\s*([^=;\s]+)\s*=\s*"?([^";]*)"?')


def parse_link_header(value: str | None) -> dict[str, str]:
    """RFC 8288 ``Link`` header -> {rel: url} (a link with several rels appears under each)."""
    links: dict[str, str] = {}
    for m in _LINK.finditer(value or ""):
        url, params = m.group(1).strip(), m.group(2)
        for name, val in _PARAM.findall(params):
            if name.lower() == "rel":
                for rel in val.split():
                    links.setdefault(rel.lower(), url)
    return links


class HeaderLinkPaginator(_UrlFollower):
    """The next page's URL is the ``Link`` header's ``rel="next"`` (RFC 8288; GitHub style).

    Stop rule: no ``rel="next"`` link.
    """

    name = "header_link"

    def __init__(self, *, rel: str = "next", header: str = "Link", max_pages: int = 100_000) -> None:
        super().__init__(max_pages=max_pages)
        self.rel, self.header = rel, header

    def update_state(self, response: PageResponse) -> None:
        value = next((v for k, v in response.headers.items() if k.lower() == self.header.lower()), None)
        self._follow(response, parse_link_header(value).get(self.rel))


class CursorPaginator(Paginator):
    """An opaque cursor in the body at ``cursor_path``, sent back as ``cursor_param``.

    Stop rule: the cursor is missing, null or empty. A cursor seen twice is an error (loop).
    """

    name = "cursor"

    def __init__(self, *, cursor_path: str = "cursors.after", cursor_param: str = "cursor",
                 max_pages: int = 100_000) -> None:
        super().__init__(max_pages=max_pages)
        self.cursor_path, self.cursor_param = cursor_path, cursor_param
        self.cursor: str | None = None
        self._seen: set[str] = set()

    def update_state(self, response: PageResponse) -> None:
        cursor = find(response.body, self.cursor_path)
        if cursor in (None, ""):
            self.has_next, self.cursor = False, None
            return
        cursor = str(cursor)
        if cursor in self._seen:
            raise PaginationError(f"cursor paginator: the API returned cursor {cursor!r} twice at {response.url}; "
                                  "stopping instead of looping")
        self._seen.add(cursor)
        self.has_next, self.cursor = True, cursor

    def update_request(self, request: PageRequest) -> None:
        request.params[self.cursor_param] = self.cursor

    def _state(self) -> dict[str, Any]:
        return {"cursor": self.cursor}

    def _restore(self, state: Mapping[str, Any]) -> None:
        self.cursor = state.get("cursor")


PAGINATORS: dict[str, type[Paginator]] = {
    "single_page": SinglePage,
    "offset": OffsetPaginator,
    "page_number": PageNumberPaginator,
    "json_link": JSONLinkPaginator,
    "header_link": HeaderLinkPaginator,
    "cursor": CursorPaginator,
}


def make_paginator(spec: Mapping[str, Any]) -> Paginator:
    """Build a paginator from ``{"type": name, **options}``; errors name the type and the bad option."""
    options = dict(spec)
    kind = options.pop("type", None)
    try:
        cls = PAGINATORS[str(kind)]
    except KeyError:
        raise ValueError(f"unknown paginator type {kind!r}; choose one of {sorted(PAGINATORS)}") from None
    try:
        return cls(**options)
    except TypeError as e:
        raise ValueError(f"paginator {kind!r}: {e}") from None
