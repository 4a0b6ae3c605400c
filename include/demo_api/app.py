"""The ASGI app: OAuth2 token endpoint, paginated catalogue endpoints, rate limit, faults, admin.

Endpoints (all ``/v1`` ones need ``Authorization: Bearer <token>`` from ``POST /api/token``):

* ``GET /v1/browse/new-releases?offset=&limit=`` -> ``{"albums": {href, items, limit, next, offset,
  previous, total}}`` (offset/limit; ``next`` is an absolute URL)
* ``GET /v1/albums/{id}/tracks?offset=&limit=`` -> the same envelope, without the wrapper
* ``GET /v1/catalogue/albums-by-page?page=&page_size=`` -> ``{page, page_size, total_pages, total, data}``
* ``GET /v1/catalogue/albums-by-cursor?cursor=&limit=`` -> ``{data, cursors: {after}}`` (opaque cursor)
* ``GET /v1/catalogue/albums-linked?page=&per_page=`` -> a JSON list, RFC 8288 ``Link`` header
  (``rel="next"``, ``"prev"``, ``"first"``, ``"last"``)

Every list endpoint accepts ``updated_since`` (inclusive) and ``updated_before`` (exclusive).
Rate limit: ``rate_limit`` requests per rolling ``rate_window`` seconds per token, 429 beyond
with ``Retry-After`` in seconds or as an HTTP date (``retry_after_format``: seconds|date|mixed).

Admin (header ``X-Admin-Key`` = the client secret): ``GET /admin/stats``, ``POST /admin/config``
(token_ttl, rate_limit, rate_window, retry_after_format), ``POST /admin/faults`` (a list of
rules, replacing the current ones), ``POST /admin/reset``. A fault rule is
``{"kind", "path": substring, "params": {name: value}, "skip": n, "times": n (-1 = always),
"status", "seconds", "retry_after"}`` with kind one of ``status`` (an error status, 503 by
default), ``429``, ``slow``, ``non_json``, ``html`` (an HTML page with status 200),
``truncated`` (a JSON body cut in half), ``expire_token`` (the token dies, 401).
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from include.demo_api.catalogue import Catalogue, parse_ts

JSON = "application/json"


@dataclass
class Settings:
    client_id: str
    client_secret: str
    token_ttl: float = 3600.0
    rate_limit: int = 0  # requests per window per token; 0 = unlimited
    rate_window: float = 1.0
    retry_after_format: str = "seconds"  # seconds | date | mixed
    max_limit: int = 50


@dataclass
class Fault:
    kind: str
    path: str = ""
    params: dict[str, str] = field(default_factory=dict)
    skip: int = 0
    times: int = 1
    status: int = 503
    seconds: float = 1.0
    retry_after: Any = 1
    seen: int = 0
    fired: int = 0

    def matches(self, request: Request) -> bool:
        if self.path and self.path not in request.url.path:
            return False
        q = request.query_params
        if any(q.get(k) != str(v) for k, v in self.params.items()):
            return False
        self.seen += 1
        if self.seen <= self.skip or (0 <= self.times <= self.fired):
            return False
        self.fired += 1
        return True


class DemoApi:
    """State of one server: settings, tokens, per-token request windows, faults, counters."""

    KINDS = {"status", "429", "slow", "non_json", "html", "truncated", "expire_token"}

    def __init__(self, catalogue: Catalogue, settings: Settings) -> None:
        self.catalogue, self.settings = catalogue, settings
        self._initial = dict(settings.__dict__)
        self.tokens: dict[str, float] = {}  # token -> expiry (monotonic)
        self.windows: dict[str, deque[float]] = {}
        self.faults: list[Fault] = []
        self.stats: dict[str, Any] = {}
        self._mixed = 0
        self.reset_stats()

    def reset_stats(self) -> None:
        self.stats = {"requests": 0, "tokens_issued": 0, "status": {}, "rate_limited": 0, "faults_fired": 0,
                      "unauthorized": 0}

    # --- helpers -------------------------------------------------------------------------------
    def count(self, status: int) -> None:
        s = self.stats["status"]
        s[str(status)] = s.get(str(status), 0) + 1

    def error(self, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
        self.count(status)
        body = json.dumps({"error": {"status": status, "message": message}})
        return Response(body, status_code=status, media_type=JSON, headers=headers)

    def ok(self, payload: Any, headers: dict[str, str] | None = None) -> Response:
        self.count(200)
        return Response(json.dumps(payload, separators=(",", ":")), media_type=JSON, headers=headers)

    def retry_after_header(self, seconds: float, fmt: str | None = None) -> str:
        fmt = fmt or self.settings.retry_after_format
        if fmt == "mixed":
            self._mixed += 1
            fmt = "date" if self._mixed % 2 == 0 else "seconds"
        secs = max(1, math.ceil(seconds))
        if fmt == "date":
            return formatdate(math.ceil(time.time() + secs), usegmt=True)
        return str(secs)

    # --- request pipeline --------------------------------------------------------------------------
    def authorize(self, request: Request) -> tuple[str | None, Response | None]:
        header = request.headers.get("authorization", "")
        if not header.startswith("Bearer "):
            self.stats["unauthorized"] += 1
            return None, self.error(401, "No token provided", {"WWW-Authenticate": 'Bearer realm="demo"'})
        token = header[7:]
        expiry = self.tokens.get(token)
        if expiry is None or expiry <= time.monotonic():
            self.stats["unauthorized"] += 1
            self.tokens.pop(token, None)
            return None, self.error(401, "The access token expired" if expiry else "Invalid access token",
                                    {"WWW-Authenticate": 'Bearer error="invalid_token"'})
        return token, None

    def rate_limit(self, token: str) -> Response | None:
        limit = self.settings.rate_limit
        if limit <= 0:
            return None
        now, window = time.monotonic(), self.settings.rate_window
        q = self.windows.setdefault(token, deque())
        while q and q[0] <= now - window:
            q.popleft()
        if len(q) >= limit:
            self.stats["rate_limited"] += 1
            wait = q[0] + window - now
            return self.error(429, "API rate limit exceeded", {"Retry-After": self.retry_after_header(wait)})
        q.append(now)
        return None

    async def fault(self, request: Request, token: str) -> Response | None:
        for f in self.faults:
            if not f.matches(request):
                continue
            self.stats["faults_fired"] += 1
            if f.kind == "slow":
                await asyncio.sleep(f.seconds)
                continue
            if f.kind == "status":
                return self.error(f.status, "Upstream trouble, try again")
            if f.kind == "429":
                ra = f.retry_after
                header = self.retry_after_header(float(ra), "seconds") if not isinstance(ra, str) else \
                    self.retry_after_header(1.0 if ra == "date" else float(ra), "date" if ra == "date" else None)
                self.stats["rate_limited"] += 1
                return self.error(429, "API rate limit exceeded", {"Retry-After": header})
            if f.kind == "non_json":
                self.count(200)
                return Response("OK upstream said hello", media_type="text/plain")
            if f.kind == "html":
                self.count(200)
                return Response("<!DOCTYPE html><html><head><title>Maintenance</title></head><body><h1>We'll be "
                                "right back</h1></body></html>", media_type="text/html")
            if f.kind == "truncated":
                return None  # the handler cuts its own body (see ``handle``)
            if f.kind == "expire_token":
                self.tokens.pop(token, None)
                self.stats["unauthorized"] += 1
                return self.error(401, "The access token expired")
        return None

    async def handle(self, request: Request, handler: Any) -> Response:
        self.stats["requests"] += 1
        token, denied = self.authorize(request)
        if denied is not None:
            return denied
        assert token is not None
        limited = self.rate_limit(token)
        if limited is not None:
            return limited
        truncated = any(f.kind == "truncated" for f in self.faults)
        fired_before = sum(f.fired for f in self.faults if f.kind == "truncated")
        faulted = await self.fault(request, token) if self.faults else None
        if faulted is not None:
            return faulted
        try:
            response = handler(request)
        except ValueError as e:
            return self.error(400, str(e))
        if truncated and sum(f.fired for f in self.faults if f.kind == "truncated") > fired_before:
            body = bytes(response.body)
            return Response(body[: len(body) // 2], media_type=JSON)
        return response

    # --- endpoints ------------------------------------------------------------------------------------
    def window_of(self, request: Request) -> tuple[int, int]:
        q = request.query_params
        try:
            since = parse_ts(q["updated_since"]) if q.get("updated_since") else None
            before = parse_ts(q["updated_before"]) if q.get("updated_before") else None
        except ValueError:
            raise ValueError("updated_since/updated_before must be ISO-8601 timestamps") from None
        return self.catalogue.window(since, before)

    def int_param(self, request: Request, name: str, default: int, lo: int, hi: int | None = None) -> int:
        raw = request.query_params.get(name)
        try:
            v = default if raw in (None, "") else int(raw)
        except ValueError:
            raise ValueError(f"{name} must be an integer") from None
        if v < lo or (hi is not None and v > hi):
            raise ValueError(f"{name} must be between {lo} and {hi}")
        return v

    @staticmethod
    def url_with(request: Request, **changes: Any) -> str:
        q = dict(request.query_params)
        q.update({k: str(v) for k, v in changes.items()})
        return f"{request.url.scheme}://{request.url.netloc}{request.url.path}?{urlencode(q)}"

    def envelope(self, request: Request, items: list[dict[str, Any]], offset: int, limit: int,
                 total: int) -> dict[str, Any]:
        nxt = self.url_with(request, offset=offset + limit, limit=limit) if offset + limit < total else None
        prev = self.url_with(request, offset=max(0, offset - limit), limit=limit) if offset > 0 else None
        return {"href": self.url_with(request, offset=offset, limit=limit), "items": items, "limit": limit,
                "next": nxt, "offset": offset, "previous": prev, "total": total}

    def new_releases(self, request: Request) -> Response:
        lo, hi = self.window_of(request)
        limit = self.int_param(request, "limit", 20, 1, self.settings.max_limit)
        offset = self.int_param(request, "offset", 0, 0)
        album = self.catalogue.album
        items = [album(i) for i in range(lo + offset, min(hi, lo + offset + limit))]
        return self.ok({"albums": self.envelope(request, items, offset, limit, hi - lo)})

    def album_tracks(self, request: Request) -> Response:
        album_id = request.path_params["album_id"]
        i = self.catalogue.index_of(album_id)
        if i is None:
            return self.error(404, f"album {album_id} not found")
        limit = self.int_param(request, "limit", 20, 1, self.settings.max_limit)
        offset = self.int_param(request, "offset", 0, 0)
        tracks = self.catalogue.tracks(i)
        return self.ok(self.envelope(request, tracks[offset:offset + limit], offset, limit, len(tracks)))

    def by_page(self, request: Request) -> Response:
        lo, hi = self.window_of(request)
        size = self.int_param(request, "page_size", 20, 1, self.settings.max_limit)
        page = self.int_param(request, "page", 1, 1)
        total = hi - lo
        start = lo + (page - 1) * size
        items = [self.catalogue.album(i) for i in range(start, min(hi, start + size))]
        return self.ok({"page": page, "page_size": size, "total_pages": math.ceil(total / size), "total": total,
                        "data": items})

    def by_cursor(self, request: Request) -> Response:
        lo, hi = self.window_of(request)
        limit = self.int_param(request, "limit", 20, 1, self.settings.max_limit)
        raw = request.query_params.get("cursor") or ""
        try:
            offset = int(base64.urlsafe_b64decode(raw.encode()).decode().split(":")[1]) if raw else 0
        except (ValueError, IndexError):
            return self.error(400, "invalid cursor")
        start = lo + offset
        items = [self.catalogue.album(i) for i in range(start, min(hi, start + limit))]
        after = None
        if start + limit < hi:
            after = base64.urlsafe_b64encode(f"o:{offset + limit}:{self.catalogue.seed}".encode()).decode()
        return self.ok({"data": items, "cursors": {"after": after}, "limit": limit})

    def linked(self, request: Request) -> Response:
        lo, hi = self.window_of(request)
        per_page = self.int_param(request, "per_page", 20, 1, self.settings.max_limit)
        page = self.int_param(request, "page", 1, 1)
        last = max(1, math.ceil((hi - lo) / per_page))
        start = lo + (page - 1) * per_page
        items = [self.catalogue.album(i) for i in range(start, min(hi, start + per_page))]
        links = [f'<{self.url_with(request, page=1, per_page=per_page)}>; rel="first"',
                 f'<{self.url_with(request, page=last, per_page=per_page)}>; rel="last"']
        if page < last:
            links.insert(0, f'<{self.url_with(request, page=page + 1, per_page=per_page)}>; rel="next"')
        if page > 1:
            links.append(f'<{self.url_with(request, page=page - 1, per_page=per_page)}>; rel="prev"')
        return self.ok(items, headers={"Link": ", ".join(links)})

    # --- token and admin -------------------------------------------------------------------------------
    async def token(self, request: Request) -> Response:
        self.stats["requests"] += 1
        form = await request.form()
        client_id, secret = form.get("client_id"), form.get("client_secret")
        header = request.headers.get("authorization", "")
        if header.startswith("Basic "):
            try:
                client_id, _, secret = base64.b64decode(header[6:]).decode().partition(":")
            except ValueError:
                return self.error(400, "malformed Basic authorization")
        if form.get("grant_type") != "client_credentials":
            return self.error(400, "unsupported_grant_type")
        if not (secrets.compare_digest(str(client_id or ""), self.settings.client_id)
                and secrets.compare_digest(str(secret or ""), self.settings.client_secret)):
            return self.error(401, "invalid_client")
        token = secrets.token_urlsafe(24)
        now = time.monotonic()
        self.tokens = {t: e for t, e in self.tokens.items() if e > now}
        self.tokens[token] = now + self.settings.token_ttl
        self.stats["tokens_issued"] += 1
        ttl = self.settings.token_ttl
        return self.ok({"access_token": token, "token_type": "Bearer",
                        "expires_in": int(ttl) if float(ttl).is_integer() else ttl})

    def admin_denied(self, request: Request) -> Response | None:
        key = request.headers.get("x-admin-key", "")
        if not secrets.compare_digest(key, self.settings.client_secret):
            return Response(json.dumps({"error": "admin key required"}), status_code=403, media_type=JSON)
        return None

    async def admin(self, request: Request) -> Response:
        denied = self.admin_denied(request)
        if denied is not None:
            return denied
        action = request.path_params["action"]
        body = await request.json() if request.method == "POST" and await request.body() else {}
        if action == "stats":
            pass
        elif action == "config":
            for k, v in body.items():
                if k not in ("token_ttl", "rate_limit", "rate_window", "retry_after_format", "max_limit"):
                    return Response(json.dumps({"error": f"unknown setting {k}"}), 400, media_type=JSON)
                setattr(self.settings, k, type(getattr(self.settings, k))(v))
            self.windows.clear()
        elif action == "faults":
            rules = body.get("faults", [])
            bad = [r.get("kind") for r in rules if r.get("kind") not in self.KINDS]
            if bad:
                return Response(json.dumps({"error": f"unknown fault kinds {bad}"}), 400, media_type=JSON)
            self.faults = [Fault(**r) for r in rules]
        elif action == "reset":
            for k, v in self._initial.items():
                setattr(self.settings, k, v)
            self.faults, self._mixed = [], 0
            self.windows.clear()
            self.reset_stats()
        elif action == "expire-tokens":
            self.tokens.clear()
        else:
            return Response(json.dumps({"error": f"unknown admin action {action}"}), 404, media_type=JSON)
        faults = [{"kind": f.kind, "seen": f.seen, "fired": f.fired} for f in self.faults]
        return Response(json.dumps({"stats": self.stats, "settings": {k: v for k, v in self.settings.__dict__.items()
                                                                      if k not in ("client_secret",)},
                                    "faults": faults}), media_type=JSON)


def create_app(catalogue: Catalogue, settings: Settings) -> Starlette:
    api = DemoApi(catalogue, settings)

    def endpoint(handler: Any) -> Any:
        async def run(request: Request) -> Response:
            return await api.handle(request, handler)
        return run

    async def health(request: Request) -> Response:
        return Response('{"status":"ok"}', media_type=JSON)

    routes = [
        Route("/health", health),
        Route("/api/token", api.token, methods=["POST"]),
        Route("/v1/browse/new-releases", endpoint(api.new_releases)),
        Route("/v1/albums/{album_id}/tracks", endpoint(api.album_tracks)),
        Route("/v1/catalogue/albums-by-page", endpoint(api.by_page)),
        Route("/v1/catalogue/albums-by-cursor", endpoint(api.by_cursor)),
        Route("/v1/catalogue/albums-linked", endpoint(api.linked)),
        Route("/admin/{action}", api.admin, methods=["GET", "POST"]),
    ]
    app = Starlette(routes=routes)
    app.state.api = api
    return app
