"""The page loop: send, retry, authenticate, decode, select records, paginate — over an injected transport.

``RestClient.pages()`` yields one ``Page`` at a time. Every failure ends in a ``RestApiError``
that names the method, URL (credentials redacted) and page number. The transport is a
callable doing the actual HTTP (the hook's); it raises ``TransportError`` for timeouts and
connection errors, which are retried like 5xx.

Fetch ahead: with a transport that can send a request without waiting for its answer
(``start``), the loop sends page k+1's request as soon as the paginator knows it (right after
page k is parsed), then yields page k: the caller lands page k (encoding, gzip, uploads) while
the server prepares page k+1, and the answer is read when the caller asks for page k+1. One
thread, exactly one request ahead: the requests, their order, the rate budget, auth renewal,
retries and the errors (raised when the caller asks for the failing page, after it landed the
page before) are those of a plain sequential loop. Memory: two pages (the one yielded, the
next one's answer in the socket buffers).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlencode

from s3lander.rest.auth import Auth, NoAuth
from s3lander.rest.paginators import PageRequest, PageResponse, Paginator
from s3lander.rest.records import RecordSelectionError, select_records
from s3lander.rest.throttle import NoLimit, RateLimiter, RetryPolicy, parse_retry_after

log = logging.getLogger(__name__)

try:  # orjson parses a page in about half the time of json (measured in bench_rest); optional
    import orjson as _orjson
except ImportError:  # pragma: no cover - orjson is in requirements.txt
    _orjson = None

# orjson turns integers beyond 64 bits into floats (lossy): a body with a run of 19+ digits
# anywhere (a number or inside a string) goes to json, which keeps every integer exact. The run is
# found by mapping every digit to 0 and searching for 19 zeros: 4.5 us on a 4.5 KB page where the
# regex ``\d{19}`` took 77 us, six times orjson's parse (measured in bench_rest)
_DIGITS_TO_0 = bytes.maketrans(b"123456789", b"000000000")
_LONG_RUN = b"0" * 19


def has_long_digit_run(content: bytes) -> bool:
    """True if ``content`` holds 19 ASCII digits in a row (an integer orjson may not keep exact)."""
    return _LONG_RUN in content.translate(_DIGITS_TO_0)


def loads_json(content: bytes) -> Any:
    """Parse a response body exactly as ``json.loads`` would, with orjson when that is safe.

    orjson rejects what ``json`` accepts beyond RFC 8259 (``NaN``, ``Infinity``, numbers out of
    double range, UTF-16/32 bodies): those bodies, and bodies with integers that may exceed 64
    bits, are parsed by ``json`` so the records are the same whichever parser ran.
    """
    if _orjson is not None and isinstance(content, (bytes, bytearray)) and not has_long_digit_run(content):
        try:
            return _orjson.loads(content)
        except _orjson.JSONDecodeError:
            pass  # let json decide (and word the error)
    return json.loads(content)


class RestApiError(RuntimeError):
    """A page could not be fetched or read; the message names the URL and the page."""


class TransportError(RuntimeError):
    """A timeout or connection failure (retryable); ``kind`` is ``timeout`` or ``connection``."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass
class RawResponse:
    status: int
    headers: Mapping[str, str]
    content: bytes
    url: str


class Transport(Protocol):
    """Send a request and wait for its answer."""

    def __call__(self, method: str, url: str, *, params: dict[str, Any], headers: dict[str, str],
                 timeout: float) -> RawResponse: ...


class InFlight(Protocol):
    """A request on its way whose answer has not been read yet."""

    def result(self) -> RawResponse:
        """Read the answer (once); timeouts and connection errors raise ``TransportError``."""

    def discard(self) -> None:
        """The answer is not wanted (the caller stopped): free the connection. No-op after ``result``."""


class StartRequest(Protocol):
    """Send a request now and return at once; the answer is read later through the ``InFlight``."""

    def __call__(self, method: str, url: str, *, params: dict[str, Any], headers: dict[str, str],
                 timeout: float) -> InFlight: ...


class _Failed:
    """An early send that failed: the error is raised when the answer is asked for, where a
    sequential loop would have met it (so it is retried, or reported, at the same point)."""

    def __init__(self, error: Exception) -> None:
        self.error: Exception | None = error

    def result(self) -> RawResponse:
        error, self.error = self.error, None
        if error is None:
            raise RuntimeError("the answer was already read")
        raise error

    def discard(self) -> None:
        self.error = None


@dataclass
class Page:
    """One fetched page: its number (1-based), the URL answered, records, raw size."""

    number: int
    url: str
    records: list[Any]
    nbytes: int
    body: Any = field(repr=False, default=None)


@dataclass
class ClientStats:
    requests: int = 0
    retries: int = 0
    throttled_429: int = 0
    server_errors: int = 0
    transport_errors: int = 0
    reauthentications: int = 0
    limiter_wait_s: float = 0.0
    backoff_wait_s: float = 0.0


def redact(url: str, params: Mapping[str, Any] | None, secret: frozenset[str]) -> str:
    """The URL with its query, secret parameters replaced by ``***`` (for logs and errors)."""
    if params:
        shown = {k: ("***" if k in secret else v) for k, v in params.items()}
        url = f"{url}{'&' if '?' in url else '?'}{urlencode(shown)}"
    return url


class RestClient:
    """Fetches pages of one endpoint with auth, a request budget, retries and record selection."""

    def __init__(self, *, transport: Transport, auth: Auth | None = None, limiter: RateLimiter | NoLimit | None = None,
                 retry: RetryPolicy | None = None, timeout: float = 30.0, headers: Mapping[str, str] | None = None,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
                 logger: logging.Logger | Any = None, start: StartRequest | None = None) -> None:
        """:param start: the transport's send-now-read-later form; given, the loop fetches one page ahead"""
        self.transport, self.start, self.auth = transport, start, auth or NoAuth()
        self.limiter, self.retry = limiter or NoLimit(), retry or RetryPolicy()
        self.timeout, self.headers = timeout, dict(headers or {})
        self.sleep, self.clock = sleep, clock
        self.log = logger or log
        self.stats = ClientStats()

    def pages(self, request: PageRequest, paginator: Paginator, records_path: str, *,
              resume: Mapping[str, Any] | None = None) -> Iterator[Page]:
        """Yield pages until the paginator's stop rule; ``resume`` = a ``checkpoint()`` of an earlier run.

        After each yielded page, ``checkpoint(self.request, paginator, page)`` describes where to go
        on (the paginator has already pointed ``self.request`` at the next page). A caller that stops
        early should close the generator (``contextlib.closing``): that drops a request sent ahead.
        """
        number = 0
        if resume is not None:
            request = PageRequest.from_dict(resume["request"])
            paginator.restore(resume["paginator"])
            number = int(resume["page"])
            if not paginator.has_next:
                return
        else:
            paginator.init_request(request)
        self.request = request
        ahead: InFlight | None = None
        try:
            while True:
                number += 1
                raw = self.fetch(request, number, ahead=ahead)
                ahead = None
                body = self.decode(raw, request, number)
                try:
                    records = select_records(body, records_path)
                except RecordSelectionError as e:
                    raise RestApiError(f"page {number} of {self._where(request)}: {e}") from None
                paginator.advance(PageResponse(url=raw.url, headers=raw.headers, body=body, records=records),
                                  request)
                page = Page(number=number, url=raw.url, records=records, nbytes=len(raw.content), body=body)
                del raw, body, records
                if not paginator.has_next:
                    yield page
                    return
                if self.start is not None:  # the next request is known: on its way while the caller lands this page
                    ahead = self.send_ahead(request)
                yield page
                del page
        finally:
            if ahead is not None:
                ahead.discard()

    @staticmethod
    def checkpoint(request: PageRequest, paginator: Paginator, page: int) -> dict[str, Any]:
        """Where a resumed run continues: the next request, the paginator's state, the last page done."""
        return {"request": request.to_dict(), "paginator": paginator.state(), "page": page}

    def _where(self, request: PageRequest) -> str:
        return f"{request.method} {redact(request.url, request.params, self.auth.secret_params)}"

    def send_ahead(self, request: PageRequest) -> InFlight:
        """Send the first attempt at ``request`` now, as ``fetch`` would (request budget, credentials,
        counted in the stats); ``fetch(request, n, ahead=...)`` reads its answer and retries if need
        be. A failure to send is kept and raised by that ``fetch``, where a sequential loop meets it."""
        assert self.start is not None
        try:
            self.stats.limiter_wait_s += self.limiter.acquire()
            headers, params = dict(self.headers), dict(request.params)
            self.auth.apply(headers, params)
            self.stats.requests += 1
            return self.start(request.method, request.url, params=params, headers=headers, timeout=self.timeout)
        except Exception as e:  # noqa: BLE001 - raised again by fetch(), in order
            return _Failed(e)

    def fetch(self, request: PageRequest, number: int, *, ahead: InFlight | None = None) -> RawResponse:
        """One page with retries: 429/5xx/timeouts/connection errors back off (Retry-After first);
        a 401 renews credentials once; other 4xx fail at once. ``ahead``: the first attempt, already
        sent by ``send_ahead``."""
        attempt, reauthenticated = 0, False
        last = ""
        while True:
            attempt += 1
            sent, ahead = ahead, None
            if sent is None:
                self.stats.limiter_wait_s += self.limiter.acquire()
                headers, params = dict(self.headers), dict(request.params)
                self.auth.apply(headers, params)
                self.stats.requests += 1
            try:
                raw = sent.result() if sent is not None else \
                    self.transport(request.method, request.url, params=params, headers=headers, timeout=self.timeout)
            except TransportError as e:
                self.limiter.completed()
                self.stats.transport_errors += 1
                last = f"{e.kind}: {e}"
                retry_after = None
            else:
                self.limiter.completed()
                if raw.status < 400:
                    return raw
                if raw.status == 401 and not reauthenticated and self.auth.on_unauthorized():
                    reauthenticated = True
                    self.stats.reauthentications += 1
                    self.log.info("Page %d: 401 from the API, renewing credentials once", number)
                    attempt -= 1
                    continue
                snippet = raw.content[:200].decode("utf-8", "replace").strip()
                last = f"HTTP {raw.status}: {snippet}"
                if not self.retry.retryable(raw.status):
                    raise RestApiError(f"page {number}: {self._where(request)} failed with {last}")
                retry_after = parse_retry_after(raw.headers.get("Retry-After"))
                if raw.status == 429:
                    self.stats.throttled_429 += 1
                else:
                    self.stats.server_errors += 1
                if retry_after is not None and retry_after > self.retry.max_retry_after_s:
                    raise RestApiError(f"page {number}: {self._where(request)} asked to retry after "
                                       f"{retry_after:.0f} s, "
                                       f"more than max_retry_after_s={self.retry.max_retry_after_s:.0f}")
            if attempt >= self.retry.max_attempts:
                raise RestApiError(f"page {number}: {self._where(request)} failed after {attempt} attempts; "
                                   f"last error: {last}")
            delay = self.retry.delay(attempt, retry_after)
            if retry_after is not None:
                self.limiter.pause_until(self.clock() + delay)
            self.stats.retries += 1
            self.stats.backoff_wait_s += delay
            self.log.warning("Page %d: %s (attempt %d/%d), retrying in %.2f s", number, last[:120], attempt,
                             self.retry.max_attempts, delay)
            self.sleep(delay)

    def decode(self, raw: RawResponse, request: PageRequest, number: int) -> Any:
        """The page's JSON; a non-JSON body (an HTML error page with status 200, a truncated
        body) is an error naming the page, never an empty page."""
        try:
            return loads_json(raw.content)
        except ValueError as e:
            ctype = next((v for k, v in raw.headers.items() if k.lower() == "content-type"), "no content type")
            snippet = raw.content[:120].decode("utf-8", "replace").strip()
            raise RestApiError(f"page {number}: {self._where(request)} answered HTTP {raw.status} with a body that "
                               f"is not JSON ({ctype}; {e}); it starts with {snippet!r}") from None
