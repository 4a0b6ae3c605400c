"""A scripted fake of the paged items API shared by the REST page-loop tests (no network)."""

from __future__ import annotations

import json

from s3lander.rest.client import RawResponse


def scripted_answer(script: dict[int, list], off: int, url: str) -> RawResponse:
    """The next scripted step for ``offset=off`` (a response, or an exception to raise), else the
    real page: 7 items, 3 per page."""
    todo = script.get(off)
    if todo:
        step = todo.pop(0)
        if isinstance(step, Exception):
            raise step
        return step
    body = {"items": [{"id": i} for i in range(off, min(7, off + 3))], "total": 7}
    return RawResponse(200, {"Content-Type": "application/json"}, json.dumps(body).encode(), f"{url}?offset={off}")
