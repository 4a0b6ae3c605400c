"""State-transition tests of the paginators (as dlt tests its own): feed a response, assert the next request."""

from __future__ import annotations

import pytest

from s3lander.rest.paginators import (
    PAGINATORS,
    CursorPaginator,
    HeaderLinkPaginator,
    JSONLinkPaginator,
    OffsetPaginator,
    PageNumberPaginator,
    PageRequest,
    PageResponse,
    PaginationError,
    SinglePage,
    make_paginator,
    parse_link_header,
)

URL = "https://api.example.com/v1/items"


def resp(body=None, records=(), headers=None, url=URL):
    return PageResponse(url=url, headers=headers or {}, body=body if body is not None else {}, records=list(records))


class TestOffset:
    def test_first_request_and_advance_until_total(self):
        p, req = OffsetPaginator(limit=10, total_path="total"), PageRequest(URL, {"q": "x"})
        p.init_request(req)
        assert req.params == {"q": "x", "offset": 0, "limit": 10}
        p.advance(resp({"total": 25}, range(10)), req)
        assert p.has_next and req.params["offset"] == 10
        p.advance(resp({"total": 25}, range(10)), req)
        assert p.has_next and req.params["offset"] == 20
        p.advance(resp({"total": 25}, range(5)), req)
        assert not p.has_next and req.params["offset"] == 20  # the request is left as it was

    def test_stops_exactly_at_total_even_with_a_full_page(self):
        p, req = OffsetPaginator(limit=10, total_path="a.total"), PageRequest(URL)
        p.init_request(req)
        p.advance(resp({"a": {"total": 10}}, range(10)), req)
        assert not p.has_next

    def test_without_total_stops_on_short_page(self):
        p, req = OffsetPaginator(limit=3, offset_param="start", limit_param="count"), PageRequest(URL)
        p.init_request(req)
        assert req.params == {"start": 0, "count": 3}
        p.advance(resp({}, range(3)), req)
        assert p.has_next and req.params["start"] == 3
        p.advance(resp({}, range(2)), req)
        assert not p.has_next

    def test_empty_page_stops_even_if_total_says_more(self):
        p, req = OffsetPaginator(limit=3, total_path="total"), PageRequest(URL)
        p.init_request(req)
        p.advance(resp({"total": 100}, []), req)
        assert not p.has_next

    def test_missing_total_is_an_error(self):
        p, req = OffsetPaginator(limit=3, total_path="total"), PageRequest(URL)
        with pytest.raises(PaginationError, match="no total at 'total'"):
            p.advance(resp({}, range(3)), req)

    def test_state_round_trip(self):
        p, req = OffsetPaginator(limit=5), PageRequest(URL)
        p.init_request(req)
        p.advance(resp({}, range(5)), req)
        q = OffsetPaginator(limit=5)
        q.restore(p.state())
        assert (q.offset, q.pages, q.has_next) == (5, 1, True)


class TestPageNumber:
    def test_advances_until_total_pages(self):
        p, req = PageNumberPaginator(page_size=2, total_pages_path="total_pages"), PageRequest(URL)
        p.init_request(req)
        assert req.params == {"page": 1, "page_size": 2}
        p.advance(resp({"total_pages": 2}, range(2)), req)
        assert p.has_next and req.params["page"] == 2
        p.advance(resp({"total_pages": 2}, range(1)), req)
        assert not p.has_next

    def test_without_total_stops_on_empty_page(self):
        p, req = PageNumberPaginator(page=0), PageRequest(URL)
        p.init_request(req)
        assert req.params == {"page": 0}
        p.advance(resp({}, [1]), req)
        assert p.has_next and req.params["page"] == 1
        p.advance(resp({}, []), req)
        assert not p.has_next

    def test_short_page_stops_when_page_size_known(self):
        p, req = PageNumberPaginator(page_size=5), PageRequest(URL)
        p.init_request(req)
        p.advance(resp({}, range(4)), req)
        assert not p.has_next


class TestJSONLink:
    def test_follows_absolute_and_relative_next_urls(self):
        p, req = JSONLinkPaginator(next_url_path="albums.next"), PageRequest(URL, {"limit": 2})
        p.advance(resp({"albums": {"next": "https://api.example.com/v1/items?offset=2&limit=2"}}, [1, 2]), req)
        assert p.has_next and req.url == "https://api.example.com/v1/items?offset=2&limit=2" and req.params == {}
        p.advance(resp({"albums": {"next": "/v1/items?offset=4&limit=2"}}, [1, 2], url=req.url), req)
        assert req.url == "https://api.example.com/v1/items?offset=4&limit=2"
        p.advance(resp({"albums": {"next": None}}, [1], url=req.url), req)
        assert not p.has_next

    def test_missing_next_stops(self):
        p, req = JSONLinkPaginator(), PageRequest(URL)
        p.advance(resp({"items": []}, []), req)
        assert not p.has_next

    def test_refuses_to_loop(self):
        p, req = JSONLinkPaginator(), PageRequest(URL)
        with pytest.raises(PaginationError, match="same next URL"):
            p.advance(resp({"next": URL}, [1]), req)


class TestHeaderLink:
    def test_parse_link_header(self):
        value = ('<https://a/x?page=2>; rel="next", <https://a/x?page=9>; rel="last", '
                 '<https://a/x?page=1>; rel="first prev"')
        assert parse_link_header(value) == {"next": "https://a/x?page=2", "last": "https://a/x?page=9",
                                            "first": "https://a/x?page=1", "prev": "https://a/x?page=1"}
        assert parse_link_header(None) == {}

    def test_follows_rel_next_until_absent(self):
        p, req = HeaderLinkPaginator(), PageRequest(URL, {"per_page": 2})
        p.advance(resp([], [1, 2], headers={"link": f'<{URL}?page=2&per_page=2>; rel="next"'}), req)
        assert p.has_next and req.url == f"{URL}?page=2&per_page=2" and req.params == {}
        p.advance(resp([], [1], headers={"Link": f'<{URL}?page=1>; rel="first"'}, url=req.url), req)
        assert not p.has_next


class TestCursor:
    def test_sends_cursor_until_null(self):
        p, req = CursorPaginator(cursor_path="cursors.after", cursor_param="after"), PageRequest(URL, {"limit": 5})
        p.init_request(req)
        assert req.params == {"limit": 5}
        p.advance(resp({"cursors": {"after": "abc"}}, [1]), req)
        assert p.has_next and req.params == {"limit": 5, "after": "abc"}
        p.advance(resp({"cursors": {"after": None}}, [1]), req)
        assert not p.has_next

    def test_repeated_cursor_is_an_error(self):
        p, req = CursorPaginator(), PageRequest(URL)
        p.advance(resp({"cursors": {"after": "x"}}, [1]), req)
        with pytest.raises(PaginationError, match="twice"):
            p.advance(resp({"cursors": {"after": "x"}}, [1]), req)

    def test_resume_continues_with_cursor(self):
        p, req = CursorPaginator(), PageRequest(URL)
        p.advance(resp({"cursors": {"after": "c1"}}, [1]), req)
        q = CursorPaginator()
        q.restore(p.state())
        assert q.cursor == "c1" and q.pages == 1


def test_single_page_stops_after_one():
    p, req = SinglePage(), PageRequest(URL)
    p.advance(resp({}, [1]), req)
    assert not p.has_next


@pytest.mark.parametrize("name", sorted(set(PAGINATORS) - {"single_page"}))
def test_max_pages_guard_raises_instead_of_truncating(name):
    spec = {"type": name, "max_pages": 2}
    if name == "offset":
        spec["limit"] = 1
    p = make_paginator(spec)
    req = PageRequest(URL)
    p.init_request(req)
    bodies = [{"next": f"{URL}?n={i}", "cursors": {"after": f"c{i}"}} for i in range(3)]
    headers = [{"Link": f'<{URL}?n={i}>; rel="next"'} for i in range(3)]
    p.advance(resp(bodies[0], [1], headers=headers[0]), req)
    with pytest.raises(PaginationError, match="max_pages=2"):
        p.advance(resp(bodies[1], [1], headers=headers[1], url=f"{URL}?n=0"), req)


def test_make_paginator_errors_name_the_problem():
    with pytest.raises(ValueError, match="unknown paginator type 'bogus'"):
        make_paginator({"type": "bogus"})
    with pytest.raises(ValueError, match="paginator 'offset'"):
        make_paginator({"type": "offset", "limit": 5, "nope": 1})
