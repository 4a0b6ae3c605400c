"""The page loop over a fake transport (retries, 401, bad bodies, resume) and config validation."""

from __future__ import annotations

import json

import pytest

from s3lander.config import ConfigError
from s3lander.rest.auth import ApiKey, OAuth2ClientCredentials
from s3lander.rest.client import RawResponse, RestApiError, RestClient, TransportError
from s3lander.rest.config import build_endpoint, window_params
from s3lander.rest.paginators import OffsetPaginator, PageRequest
from s3lander.rest.throttle import RetryPolicy
from tests.unit.rest_fakes import scripted_answer

URL = "https://api.example.com/items"


class FakeApi:
    """Serves 7 items, 3 per page, with scripted failures per offset."""

    def __init__(self, script=None):
        self.script = dict(script or {})
        self.calls: list[tuple[str, dict, dict]] = []

    def __call__(self, method, url, *, params, headers, timeout):
        self.calls.append((url, dict(params), dict(headers)))
        return scripted_answer(self.script, int(params.get("offset", 0)), url)


def client(api, **kw):
    sleeps: list[float] = []
    c = RestClient(transport=api, retry=RetryPolicy(max_attempts=3, backoff_base_s=0.01), sleep=sleeps.append, **kw)
    return c, sleeps


def ids(pages):
    return [r["id"] for p in pages for r in p.records]


def test_pages_and_stop():
    c, _ = client(FakeApi())
    pages = list(c.pages(PageRequest(URL), OffsetPaginator(limit=3, total_path="total"), "items"))
    assert [p.number for p in pages] == [1, 2, 3] and ids(pages) == list(range(7))


def test_retries_5xx_429_and_timeouts_honouring_retry_after():
    api = FakeApi({3: [RawResponse(503, {}, b"busy", URL), RawResponse(429, {"Retry-After": "2"}, b"", URL)],
                   6: [TransportError("timeout", "no answer within 1 s")]})
    c, sleeps = client(api)
    pages = list(c.pages(PageRequest(URL), OffsetPaginator(limit=3, total_path="total"), "items"))
    assert ids(pages) == list(range(7))
    assert c.stats.retries == 3 and c.stats.throttled_429 == 1 and c.stats.transport_errors == 1
    assert 2 <= sleeps[1] <= 2.3


def test_gives_up_with_url_and_page_and_redacts_query_keys():
    api = FakeApi({3: [RawResponse(500, {}, b"boom", URL)] * 5})
    c, _ = client(api, auth=ApiKey(key="SECRET", param="key", location="query"))
    with pytest.raises(RestApiError) as e:
        list(c.pages(PageRequest(URL), OffsetPaginator(limit=3, total_path="total"), "items"))
    msg = str(e.value)
    assert "page 2" in msg and "offset=3" in msg and "3 attempts" in msg and "HTTP 500: boom" in msg
    assert "SECRET" not in msg  # the key goes on the wire only, never into the kept request
    assert api.calls[0][1]["key"] == "SECRET"  # it was sent, just never shown


def test_4xx_fails_at_once_and_401_renews_once():
    tokens = iter(["a", "b", "c"])
    auth = OAuth2ClientCredentials(token_url="t", client_id="i", client_secret="s",
                                   fetch_token=lambda *a: {"access_token": next(tokens), "expires_in": 3600})
    api = FakeApi({3: [RawResponse(401, {}, b"expired", URL)]})
    c, _ = client(api, auth=auth)
    assert ids(c.pages(PageRequest(URL), OffsetPaginator(limit=3, total_path="total"), "items")) == list(range(7))
    assert [h["Authorization"] for _, _, h in api.calls] == ["Bearer a", "Bearer a", "Bearer b", "Bearer b"]

    api = FakeApi({0: [RawResponse(401, {}, b"no", URL), RawResponse(401, {}, b"still no", URL)]})
    c, _ = client(api, auth=auth)
    with pytest.raises(RestApiError, match="HTTP 401: still no"):
        list(c.pages(PageRequest(URL), OffsetPaginator(limit=3), "items"))
    api = FakeApi({0: [RawResponse(404, {}, b"gone", URL)]})
    c, _ = client(api)
    with pytest.raises(RestApiError, match="HTTP 404"):
        list(c.pages(PageRequest(URL), OffsetPaginator(limit=3), "items"))
    assert len(api.calls) == 1


def test_html_page_with_200_is_an_error_naming_the_page():
    api = FakeApi({3: [RawResponse(200, {"Content-Type": "text/html"}, b"<html>down</html>", URL)]})
    c, _ = client(api)
    with pytest.raises(RestApiError, match=r"page 2: GET .*offset=3.* not JSON \(text/html"):
        list(c.pages(PageRequest(URL), OffsetPaginator(limit=3), "items"))


def test_resume_continues_after_the_checkpointed_page():
    c, _ = client(FakeApi())
    p = OffsetPaginator(limit=3, total_path="total")
    it = c.pages(PageRequest(URL), p, "items")
    next(it)
    ckpt = json.loads(json.dumps(c.checkpoint(c.request, p, 1)))
    api = FakeApi()
    c2, _ = client(api)
    pages = list(c2.pages(PageRequest(URL), OffsetPaginator(limit=3, total_path="total"), "items", resume=ckpt))
    assert [pg.number for pg in pages] == [2, 3] and ids(pages) == [3, 4, 5, 6]
    assert [params["offset"] for _, params, _ in api.calls] == [3, 6]


BASE = {"conn_id": "c", "path": "/x", "records": "items", "paginator": {"type": "offset", "limit": 5}}


def test_config_validation_names_endpoint_and_problem():
    ep = build_endpoint("e", {**BASE, "incremental": {"start_param": "since"}})
    assert ep.dataset == "e" and ep.format == "jsonl.gz" and ep.auth == {"type": "none"}
    for bad, msg in [({"paginator": {"type": "zig"}}, "unknown paginator type"),
                     ({"auth": {"type": "bearer", "token": "x"}}, "must not be in config"),
                     ({"auth": {"type": "oauth2_client_credentials"}}, "token_path"),
                     ({"format": "csv"}, "unknown format"),
                     ({"rate_limit": {"requests": 0, "per_seconds": 1}}, "rate_limit"),
                     ({"path": "x"}, "must start with '/'"),
                     ({"bogus": 1}, "unknown keys"),
                     ({"incremental": {"format": "iso"}}, "start_param")]:
        with pytest.raises(ConfigError, match=msg) as e:
            build_endpoint("e", {**BASE, **bad}, where="f.yaml")
        assert "f.yaml: endpoint 'e'" in str(e.value)
    with pytest.raises(ConfigError, match="source 'nope'"):
        build_endpoint("e", {**BASE, "source": "nope"})


def test_window_params_formats():
    from datetime import datetime, timezone

    s, e = datetime(2024, 1, 1, tzinfo=timezone.utc), datetime(2024, 1, 2, tzinfo=timezone.utc)
    assert window_params({"start_param": "a", "end_param": "b"}, s, e) == {"a": "2024-01-01T00:00:00Z",
                                                                           "b": "2024-01-02T00:00:00Z"}
    assert window_params({"start_param": "a", "format": "epoch"}, s, e) == {"a": 1704067200}
    assert window_params(None, s, e) == {}


def test_fingerprint_changes_with_what_decides_the_objects():
    a = build_endpoint("e", BASE)
    assert a.fingerprint(url="u") == build_endpoint("e", {**BASE, "retry": {"max_attempts": 2}}).fingerprint(url="u")
    assert a.fingerprint(url="u") != build_endpoint("e", {**BASE, "pages_per_part": 7}).fingerprint(url="u")
