"""Fetch ahead in the page loop: the next request is sent before the caller lands a page, and
everything else (order, errors, retries, budget, auth, checkpoints) is what the sequential loop does.

A fake API that can "send now, answer later" logs every event (send, read, discard) next to
the caller's own "land" events, so the tests check the interleaving exactly (no threads, no clock).
"""

from __future__ import annotations

import json
import random
import re
from contextlib import closing

import pytest

from s3lander.rest.auth import Auth, AuthError, OAuth2ClientCredentials
from s3lander.rest.client import RawResponse, RestApiError, RestClient, TransportError, has_long_digit_run, loads_json
from s3lander.rest.paginators import JSONLinkPaginator, OffsetPaginator, PageRequest
from s3lander.rest.throttle import RetryPolicy
from tests.unit.rest_fakes import scripted_answer

URL = "https://api.example.com/items"


class AheadApi:
    """7 items, 3 per page (offsets 0, 3, 6), scripted answers per offset; logs sends, reads and discards."""

    def __init__(self, script=None, *, fail_start=()):
        self.script = {k: list(v) for k, v in (script or {}).items()}
        self.fail_start = set(fail_start)
        self.events: list[tuple[str, int]] = []
        self.calls: list[tuple[int, dict]] = []

    def _answer(self, off: int) -> RawResponse:
        return scripted_answer(self.script, off, URL)

    def _sent(self, params, headers) -> int:
        off = int(params["offset"])
        self.events.append(("send", off))
        self.calls.append((off, dict(headers)))
        return off

    def __call__(self, method, url, *, params, headers, timeout):  # the blocking transport
        off = self._sent(params, headers)
        self.events.append(("read", off))
        return self._answer(off)

    def start(self, method, url, *, params, headers, timeout):  # send now, read later
        off = self._sent(params, headers)
        if off in self.fail_start:
            self.fail_start.discard(off)
            raise TransportError("connection", "ConnectionResetError")
        return Sent(self, off)


class Sent:
    def __init__(self, api: AheadApi, off: int) -> None:
        self.api, self.off, self.done = api, off, False

    def result(self) -> RawResponse:
        assert not self.done
        self.done = True
        self.api.events.append(("read", self.off))
        return self.api._answer(self.off)

    def discard(self) -> None:
        if not self.done:
            self.done = True
            self.api.events.append(("discard", self.off))


def client(api: AheadApi, *, ahead: bool = True, **kw) -> RestClient:
    return RestClient(transport=api, start=api.start if ahead else None,
                      retry=RetryPolicy(max_attempts=3, backoff_base_s=0.01, rng=random.Random(1)),
                      sleep=lambda s: None, **kw)


def land_all(c: RestClient, api: AheadApi, paginator=None, **kw) -> list[int]:
    """Consume every page as the operator does, logging a 'land' event per page; return the ids."""
    ids = []
    with closing(c.pages(PageRequest(URL), paginator or OffsetPaginator(limit=3, total_path="total"), "items",
                         **kw)) as pages:
        for page in pages:
            api.events.append(("land", page.number))
            ids += [r["id"] for r in page.records]
    return ids


def test_next_request_is_sent_before_the_page_is_landed_and_read_after():
    api = AheadApi()
    assert land_all(client(api), api) == list(range(7))
    assert api.events == [("send", 0), ("read", 0),
                          ("send", 3), ("land", 1), ("read", 3),
                          ("send", 6), ("land", 2), ("read", 6),
                          ("land", 3)]  # the last page sends nothing ahead: the stop rule said no more


def test_without_start_the_loop_is_sequential():
    api = AheadApi()
    assert land_all(client(api, ahead=False), api) == list(range(7))
    assert api.events == [("send", 0), ("read", 0), ("land", 1), ("send", 3), ("read", 3), ("land", 2),
                          ("send", 6), ("read", 6), ("land", 3)]


def test_error_on_page_k_is_raised_after_page_k_minus_1_was_landed():
    api = AheadApi({6: [RawResponse(404, {}, b"gone", URL)]})
    with pytest.raises(RestApiError, match=r"page 3: GET .*offset=6.* HTTP 404: gone"):
        land_all(client(api), api)
    assert [e for e in api.events if e[0] == "land"] == [("land", 1), ("land", 2)]
    assert api.events[-1] == ("read", 6)


def test_persistent_5xx_on_a_page_sent_ahead_uses_the_same_attempts_and_names_the_page():
    api = AheadApi({3: [RawResponse(500, {}, b"boom", URL)] * 5})
    c = client(api)
    with pytest.raises(RestApiError, match=r"page 2: .*offset=3.* after 3 attempts; last error: HTTP 500: boom"):
        land_all(c, api)
    assert [off for off, _ in api.calls] == [0, 3, 3, 3]
    assert c.stats.requests == 4 and c.stats.retries == 2 and c.stats.server_errors == 3


def test_a_failure_to_send_ahead_is_retried_where_the_sequential_loop_would():
    api = AheadApi(fail_start={3})
    c = client(api)
    assert land_all(c, api) == list(range(7))
    assert api.events[:6] == [("send", 0), ("read", 0), ("send", 3), ("land", 1), ("send", 3), ("read", 3)]
    assert c.stats.transport_errors == 1 and c.stats.retries == 1 and c.stats.requests == 4


def test_an_auth_error_sending_ahead_surfaces_after_the_previous_page_landed():
    class FailsSecondTime(Auth):
        name = "test"

        def __init__(self):
            self.n = 0

        def apply(self, headers, params):
            self.n += 1
            if self.n == 2:
                raise AuthError("token endpoint refused")

    api = AheadApi()
    with pytest.raises(AuthError, match="refused"):
        land_all(client(api, auth=FailsSecondTime()), api)
    assert api.events == [("send", 0), ("read", 0), ("land", 1)]


def test_closing_early_discards_the_request_sent_ahead():
    api = AheadApi()
    c = client(api)
    it = c.pages(PageRequest(URL), OffsetPaginator(limit=3, total_path="total"), "items")
    assert next(it).number == 1
    it.close()
    assert api.events == [("send", 0), ("read", 0), ("send", 3), ("discard", 3)]


def test_a_failure_while_landing_discards_the_request_sent_ahead():
    api = AheadApi()
    pages = client(api).pages(PageRequest(URL), OffsetPaginator(limit=3, total_path="total"), "items")
    with pytest.raises(RuntimeError, match="S3 down"), closing(pages):
        for page in pages:
            if page.number == 2:
                raise RuntimeError("S3 down")
    assert api.events[-2:] == [("send", 6), ("discard", 6)]


def test_checkpoint_taken_with_a_request_ahead_resumes_without_duplicates_or_gaps():
    checkpoints = {}
    for ahead in (True, False):
        api = AheadApi()
        c = client(api, ahead=ahead)
        p = OffsetPaginator(limit=3, total_path="total")
        with closing(c.pages(PageRequest(URL), p, "items")) as it:
            next(it)
            checkpoints[ahead] = json.loads(json.dumps(c.checkpoint(c.request, p, 1)))
    assert checkpoints[True] == checkpoints[False]  # the page in flight does not move the checkpoint

    api = AheadApi()
    c2 = client(api)
    ids = []
    with closing(c2.pages(PageRequest(URL), OffsetPaginator(limit=3, total_path="total"), "items",
                          resume=checkpoints[True])) as pages:
        numbers = []
        for page in pages:
            numbers.append(page.number)
            ids += [r["id"] for r in page.records]
    assert numbers == [2, 3] and ids == [3, 4, 5, 6]
    assert [off for off, _ in api.calls] == [3, 6]


class RecordingLimiter:
    def __init__(self):
        self.calls: list[str] = []

    def acquire(self) -> float:
        self.calls.append("acquire")
        return 0.0

    def completed(self) -> None:
        self.calls.append("completed")

    def pause_until(self, t: float) -> None:
        self.calls.append("pause")


def test_same_requests_stats_and_budget_calls_as_the_sequential_loop():
    """A run with 429s (Retry-After), 5xx, timeouts and a 401 gives the same requests, headers,
    statistics and rate-budget calls with and without fetch ahead."""
    def script():
        return {3: [RawResponse(503, {}, b"busy", URL), RawResponse(429, {"Retry-After": "2"}, b"", URL)],
                6: [TransportError("timeout", "no answer within 1 s"), RawResponse(401, {}, b"expired", URL)]}

    runs = {}
    for ahead in (True, False):
        tokens = iter(["a", "b", "c"])
        auth = OAuth2ClientCredentials(token_url="t", client_id="i", client_secret="s",
                                       fetch_token=lambda *a, tokens=tokens: {"access_token": next(tokens),
                                                                              "expires_in": 3600})
        api, limiter = AheadApi(script()), RecordingLimiter()
        c = client(api, ahead=ahead, auth=auth, limiter=limiter)
        assert land_all(c, api) == list(range(7))
        runs[ahead] = (api.calls, c.stats, limiter.calls)
    assert runs[True] == runs[False]
    calls, stats, budget = runs[True]
    assert [h["Authorization"] for _, h in calls] == ["Bearer a"] * 6 + ["Bearer b"]
    assert stats.requests == 7 and stats.retries == 3 and stats.reauthentications == 1
    assert budget.count("acquire") == stats.requests
    # one request at a time: every acquire is followed by its completion before the next acquire
    assert re.fullmatch(r"(acquire completed (pause )?)+", " ".join(budget) + " ")


def test_next_url_paginator_sends_the_url_read_from_the_page_ahead():
    pages = {"/p1": {"items": [1, 2], "next": "/p2"}, "/p2": {"items": [3], "next": "/p3"},
             "/p3": {"items": [4], "next": None}}
    sent = []

    class LinkApi:
        def __call__(self, method, url, **kw):
            return self.start(method, url, **kw).result()

        def start(self, method, url, *, params, headers, timeout):
            path = url.split("example.com", 1)[1]
            sent.append(path)

            class Answer:
                def result(self):
                    return RawResponse(200, {}, json.dumps(pages[path]).encode(), url)

                def discard(self):
                    pass
            return Answer()

    api = LinkApi()
    c = RestClient(transport=api, start=api.start)
    got = [r for p in c.pages(PageRequest("https://example.com/p1"), JSONLinkPaginator(next_url_path="next"),
                              "items") for r in p.records]
    assert got == [1, 2, 3, 4] and sent == ["/p1", "/p2", "/p3"]


def test_long_digit_run_check_matches_the_regex_and_keeps_big_integers_exact():
    rng = random.Random(7)
    regex = re.compile(rb"\d{19}")
    for _ in range(2000):
        s = bytes(rng.choice(b"0123456789a\",: ") for _ in range(rng.randint(0, 60)))
        assert has_long_digit_run(s) == bool(regex.search(s)), s
    big = 2**70
    assert loads_json(json.dumps({"n": big, "m": 1.5}).encode()) == {"n": big, "m": 1.5}
    assert loads_json(b'{"id": "1234567890123456789"}') == {"id": "1234567890123456789"}
