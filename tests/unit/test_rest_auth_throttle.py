"""Auth strategies and the rate limiter / retry policy, with a fake clock (no waiting, no network)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest

from s3lander.rest.auth import ApiKey, AuthError, BearerToken, NoAuth, OAuth2ClientCredentials
from s3lander.rest.records import RecordSelectionError, find, select_records
from s3lander.rest.throttle import RateLimiter, RetryPolicy, parse_retry_after


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.t += s


class TestAuth:
    def test_none_bearer_api_key(self):
        h, p = {}, {}
        NoAuth().apply(h, p)
        assert h == p == {}
        BearerToken(token="tok").apply(h, p)
        assert h == {"Authorization": "Bearer tok"}
        h, p = {}, {}
        ApiKey(key="k", param="api_key", location="query").apply(h, p)
        assert p == {"api_key": "k"} and h == {}
        assert ApiKey(key="k", location="query", param="api_key").secret_params == {"api_key"}
        h, p = {}, {}
        ApiKey(key="k").apply(h, p)
        assert h == {"X-API-Key": "k"}

    def test_missing_secrets_fail_without_echoing(self):
        with pytest.raises(AuthError, match="password"):
            BearerToken(token="")
        with pytest.raises(AuthError, match="login"):
            OAuth2ClientCredentials(token_url="u", client_id="", client_secret="s", fetch_token=lambda *a: {})

    def _oauth(self, clock, expires_in=100, **kw):
        calls = []

        def fetch(url, data, basic):
            calls.append((url, dict(data), basic))
            return {"access_token": f"t{len(calls)}", "token_type": "Bearer", "expires_in": expires_in}

        return OAuth2ClientCredentials(token_url="https://x/token", client_id="id", client_secret="sec",
                                       fetch_token=fetch, clock=clock, **kw), calls

    def test_oauth_fetches_once_then_renews_before_expiry(self):
        clock = FakeClock()
        auth, calls = self._oauth(clock, expires_in=100, renew_margin_s=60)
        h: dict = {}
        auth.apply(h, {})
        assert h["Authorization"] == "Bearer t1" and len(calls) == 1
        assert calls[0][1] == {"grant_type": "client_credentials", "client_id": "id", "client_secret": "sec"}
        clock.t += 89  # margin = min(60, 100/10) = 10 s: still valid
        auth.apply(h, {})
        assert h["Authorization"] == "Bearer t1"
        clock.t += 1.5  # within 10 s of expiry: renewed before it expires
        auth.apply(h, {})
        assert h["Authorization"] == "Bearer t2" and len(calls) == 2

    def test_oauth_renews_on_401_and_basic_mode(self):
        clock = FakeClock()
        auth, calls = self._oauth(clock, send_as="basic")
        h: dict = {}
        auth.apply(h, {})
        assert calls[0][2] == ("id", "sec") and "client_secret" not in calls[0][1]
        assert auth.on_unauthorized() is True
        auth.apply(h, {})
        assert h["Authorization"] == "Bearer t2"

    def test_oauth_bad_token_answer(self):
        auth = OAuth2ClientCredentials(token_url="https://x/token", client_id="id", client_secret="sec",
                                       fetch_token=lambda *a: {"error": "invalid_client"})
        with pytest.raises(AuthError, match="without an access_token") as e:
            auth.apply({}, {})
        assert "sec" not in str(e.value)


class TestRateLimiter:
    def test_n_per_window_then_waits_for_the_oldest_to_leave(self):
        clock = FakeClock()
        rl = RateLimiter(3, 1.0, margin=0.0, clock=clock, sleep=clock.sleep)
        for _ in range(3):
            assert rl.acquire() == 0
        clock.t += 0.4
        assert rl.acquire() == pytest.approx(0.6)  # the first start leaves the window at t0 + 1
        assert clock.t == pytest.approx(1001.0)

    def test_sustained_rate_never_exceeds_the_budget_in_any_window(self):
        clock = FakeClock()
        rl = RateLimiter(10, 1.0, clock=clock, sleep=clock.sleep)
        starts = []
        for _ in range(200):
            rl.acquire()
            starts.append(clock.t)
            clock.t += 0.005  # round trip
            rl.completed()
        for i, s in enumerate(starts):
            assert sum(1 for t in starts[i:] if t < s + 1.0) <= 10
        rate = (len(starts) - 10) / (starts[-1] - starts[0])  # the first window is a burst of 10
        assert 0.95 * 10 <= rate <= 10

    def test_window_counts_from_the_answer_so_latency_never_overruns_the_server(self):
        clock = FakeClock()
        rl = RateLimiter(2, 1.0, clock=clock, sleep=clock.sleep)
        rl.acquire()
        clock.t += 0.3  # a slow answer: the server may have stamped the request as late as now
        rl.completed()
        rl.acquire()
        rl.completed()
        assert rl.acquire() == pytest.approx(1.0)  # waits until 1 s after the FIRST ANSWER, not the first send
        assert clock.t == pytest.approx(1001.3)

    def test_pause_until_blocks_everyone(self):
        clock = FakeClock()
        rl = RateLimiter(100, 1.0, clock=clock, sleep=clock.sleep)
        rl.pause_until(clock.t + 2.5)
        assert rl.acquire() == pytest.approx(2.5)

    def test_rejects_nonsense(self):
        with pytest.raises(ValueError):
            RateLimiter(0, 1)


class TestRetry:
    def test_retry_after_seconds_and_http_date(self):
        now = datetime(2024, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
        assert parse_retry_after("7") == 7.0
        assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now=now) == 30.0
        assert parse_retry_after(format_datetime(now - timedelta(seconds=30), usegmt=True), now=now) == 0.0
        assert parse_retry_after("soon") is None and parse_retry_after(None) is None

    def test_backoff_is_exponential_jittered_and_capped(self):
        policy = RetryPolicy(backoff_base_s=1, backoff_max_s=8, rng=random.Random(1))
        for attempt, cap in [(1, 1), (2, 2), (3, 4), (4, 8), (9, 8)]:
            d = [policy.backoff(attempt) for _ in range(50)]
            assert all(cap / 2 <= x <= cap for x in d)
            assert len(set(d)) > 1  # jitter
        assert 3 <= policy.delay(1, 3.0) <= 3.5  # Retry-After wins over backoff

    def test_statuses(self):
        p = RetryPolicy.from_options({"retry_statuses": [503]})
        assert p.retryable(503) and not p.retryable(429)
        assert RetryPolicy().retryable(429) and not RetryPolicy().retryable(404)


class TestRecords:
    def test_paths(self):
        doc = {"albums": {"items": [{"id": 1}, {"id": 2}], "total": 2}, "data": [[{"x": 1}]]}
        assert select_records(doc, "albums.items") == [{"id": 1}, {"id": 2}]
        assert select_records(doc, "$.albums.items") == [{"id": 1}, {"id": 2}]
        assert find(doc, "albums.items[1].id") == 2
        assert select_records([{"a": 1}], "$") == [{"a": 1}]
        assert find(doc, "$..total") == 2  # jsonpath-ng for the rest
        assert find(doc, "nope", "d") == "d"
        assert select_records({"items": None}, "items") == []
        with pytest.raises(RecordSelectionError, match="no records at JSON path 'items'"):
            select_records({"albums": {}}, "items")
        with pytest.raises(RecordSelectionError, match="selects a int"):
            select_records(doc, "albums.total")
