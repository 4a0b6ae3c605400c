"""RestApiHook: HTTP I/O of the REST pattern: keep-alive connections for the pages, a ``requests.Session`` besides.

Built from an Airflow ``http`` connection: ``schema://host:port`` is the base URL, login and
password are the credentials the endpoint's auth strategy needs (OAuth2 client id/secret,
a bearer token or an API key in the password). Secrets are registered with Airflow's log
masker and never logged; timeouts and connection errors surface as ``TransportError`` so
the client's retry policy treats them like 5xx.

Pages go over a ``KeepAliveChannel`` (urllib3 connections, one per origin) that can send a
request and read its answer later, which is what lets the page loop fetch one page ahead,
at half of requests' CPU per page. Token requests, and any page request that needs what only
requests does (proxies, redirects, cookies), go through the ``requests.Session``.
"""

from __future__ import annotations

import http.client
import logging
import time
from collections.abc import Callable, Mapping
from functools import cached_property, lru_cache, partial
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urljoin, urlsplit

from airflow.sdk import BaseHook
from requests.exceptions import Timeout as RequestsTimeout
from requests.structures import CaseInsensitiveDict
from requests.utils import requote_uri
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import NewConnectionError
from urllib3.exceptions import TimeoutError as Urllib3Timeout

from s3lander.rest.auth import AUTHS, Auth
from s3lander.rest.client import InFlight, RawResponse, RestClient, TransportError
from s3lander.rest.throttle import NoLimit, RateLimiter, RetryPolicy

if TYPE_CHECKING:
    import requests
    from urllib3.connection import HTTPConnection

    from s3lander.rest.config import EndpointConfig

#: statuses requests follows (with a Location header)
REDIRECTS = frozenset({301, 302, 303, 307, 308})
#: what a failed exchange raises (resets, timeouts, TLS, bad status lines, truncated or undecodable bodies)
NETWORK_ERRORS = (OSError, http.client.HTTPException, Urllib3Error)


def _mask(secret: str | None) -> None:
    if secret:
        try:
            from airflow.sdk.log import mask_secret

            mask_secret(secret)
        except Exception:  # noqa: BLE001 - masking is best effort outside a task
            logging.getLogger(__name__).debug("secret masker unavailable")


@lru_cache(maxsize=64)
def _requote(url: str) -> str:
    """``requote_uri`` (5 us) once per URL: an offset or page-number endpoint sends the same one each page."""
    return requote_uri(url)


def with_query(url: str, params: dict[str, Any] | None) -> str:
    """``url`` with ``params`` appended to its query, encoded as ``requests`` encodes ``params=``."""
    if not params:
        return url
    pairs = []
    for k, vs in params.items():
        if isinstance(vs, (str, bytes)) or not hasattr(vs, "__iter__"):
            vs = [vs]
        pairs.extend((k, v) for v in vs if v is not None)
    if not pairs:
        return url
    base, hash_, fragment = url.partition("#")
    sep = "" if base.endswith(("?", "&")) else ("&" if "?" in base else "?")
    return f"{base}{sep}{urlencode(pairs, doseq=True)}{hash_}{fragment}"


class Answer:
    """An ``InFlight`` read by a callable: ``result()`` once, ``discard()`` drops it unread."""

    __slots__ = ("_read", "_drop")

    def __init__(self, read: Callable[[], RawResponse], drop: Callable[[], None] | None = None) -> None:
        self._read: Callable[[], RawResponse] | None = read
        self._drop = drop

    def result(self) -> RawResponse:
        read, self._read, self._drop = self._read, None, None
        if read is None:
            raise RuntimeError("the answer was already read or discarded")
        return read()

    def discard(self) -> None:
        drop, self._read, self._drop = self._drop, None, None
        if drop is not None:
            drop()


def _transport_error(e: BaseException, timeout: float) -> TransportError:
    """A failed exchange (either path: the channel's urllib3 or the requests session) as the
    ``TransportError`` the retry policy knows: ``timeout`` or ``connection``."""
    if isinstance(e, (TimeoutError, Urllib3Timeout, RequestsTimeout)) and not isinstance(e, NewConnectionError):
        return TransportError("timeout", f"no answer within {timeout:g} s")
    return TransportError("connection", type(e).__name__)


class KeepAliveChannel:
    """HTTP/1.1 requests over one keep-alive urllib3 connection per origin, sent now, answered later.

    ``requests.Session`` cannot send a request without waiting for its answer; ``start`` writes
    the request to the socket and returns an ``InFlight`` whose ``result()`` reads the answer
    (body included, content-encoding decoded). At most one request is in flight per origin. It
    also skips requests' per-request machinery (preparing, merging settings, cookies, hooks,
    redirect checks): about half the client CPU per page (measured in bench_rest). What it does
    not do — proxies, redirects, cookies — the hook leaves to its requests session.

    :param headers: sent with every request, under the request's own
    :param verify: as requests' ``verify``: True (certifi's bundle), False, or a CA file or folder
    :param cert: as requests' ``cert``: a client certificate file, or (cert, key)
    """

    def __init__(self, *, headers: Mapping[str, str] | None = None, verify: bool | str = True,
                 cert: str | tuple[str, str] | None = None) -> None:
        self.headers = {k.lower(): (k, v) for k, v in (headers or {}).items()}
        self.verify, self.cert = verify, cert
        self._conns: dict[tuple[str, str, int], HTTPConnection] = {}

    @staticmethod
    def target(url: str) -> tuple[tuple[str, str, int], str] | None:
        """(origin, request target) of an absolute http(s) URL, or None if this channel cannot send to it."""
        if not url.isascii():
            return None
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
            return None
        port = parts.port or (443 if scheme == "https" else 80)
        path = parts.path or "/"
        return (scheme, parts.hostname, port), f"{path}?{parts.query}" if parts.query else path

    def _connection(self, origin: tuple[str, str, int], timeout: float) -> HTTPConnection:
        conn = self._conns.get(origin)
        if conn is not None and conn.sock is not None and not conn.is_connected:
            conn.close()  # the server closed the idle connection: reconnect rather than write into it
        if conn is None:
            from urllib3.connection import HTTPConnection, HTTPSConnection

            scheme, host, port = origin
            if scheme == "http":
                conn = HTTPConnection(host, port, timeout=timeout)
            else:
                conn = HTTPSConnection(host, port, timeout=timeout, **self._tls())
            self._conns[origin] = conn
        conn.timeout = timeout
        return conn

    def _tls(self) -> dict[str, Any]:
        import os

        if self.verify is False:
            options: dict[str, Any] = {"cert_reqs": "CERT_NONE"}
        else:
            from requests.certs import where

            ca = where() if self.verify is True else str(self.verify)
            options = {"cert_reqs": "CERT_REQUIRED",
                       ("ca_cert_dir" if os.path.isdir(ca) else "ca_certs"): ca}
        if self.cert:
            cert_file, key_file = self.cert if isinstance(self.cert, tuple) else (self.cert, None)
            options.update(cert_file=cert_file, key_file=key_file)
        return options

    def start(self, method: str, url: str, *, headers: Mapping[str, str], timeout: float,
              on_answer: Callable[[Any, RawResponse], RawResponse] | None = None) -> InFlight | None:
        """Send ``method url`` (no body) now; None if this channel cannot send to ``url`` (see ``target``).
        Errors sending raise ``TransportError``; ``on_answer(urllib3_response, raw)`` may replace
        the answer (the hook's redirect and cookie rules)."""
        where = self.target(url)
        if where is None:
            return None
        origin, target = where
        conn = self._connection(origin, timeout)
        merged = dict(self.headers)
        for k, v in headers.items():
            merged[k.lower()] = (k, v)
        try:
            conn.request(method, target, headers=dict(merged.values()))
        except NETWORK_ERRORS as e:
            conn.close()
            raise _transport_error(e, timeout) from e
        except BaseException:  # e.g. an invalid header value: not retryable, but the connection is unusable
            conn.close()
            raise
        return Answer(partial(self._read, conn, url, timeout, on_answer), conn.close)

    @staticmethod
    def _read(conn: HTTPConnection, url: str, timeout: float,
              on_answer: Callable[[Any, RawResponse], RawResponse] | None) -> RawResponse:
        try:
            r = conn.getresponse()  # reads the whole body (preload), decoded as requests decodes it
            # headers as requests gives them: case-insensitive, repeated headers joined with ", "
            raw = RawResponse(status=r.status, headers=CaseInsensitiveDict(r.headers), content=r.data, url=url)
        except NETWORK_ERRORS as e:
            conn.close()
            raise _transport_error(e, timeout) from e
        except BaseException:
            conn.close()
            raise
        return on_answer(r, raw) if on_answer is not None else raw

    def close(self) -> None:
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()


class RestApiHook(BaseHook):
    """Session, base URL and credentials of one API connection.

    :param http_conn_id: the Airflow ``http`` connection (host, schema, port, login, password)
    :param pool_maxsize: keep-alive connections the requests session keeps (token requests, fallbacks);
        page requests use the ``KeepAliveChannel``, one connection per origin
    """

    conn_name_attr = "http_conn_id"
    default_conn_name = "http_default"
    conn_type = "http"
    hook_name = "REST API (s3lander)"

    def __init__(self, http_conn_id: str = default_conn_name, *, pool_maxsize: int = 4) -> None:
        super().__init__()
        self.http_conn_id = http_conn_id
        self.pool_maxsize = pool_maxsize

    @cached_property
    def connection(self) -> Any:
        conn = self.get_connection(self.http_conn_id)
        _mask(conn.password)
        return conn

    @cached_property
    def base_url(self) -> str:
        c = self.connection
        host = (c.host or "").rstrip("/")
        if not host:
            raise ValueError(f"connection {self.http_conn_id!r} has no host")
        if "://" not in host:
            host = f"{c.schema or 'https'}://{host}"
        if c.port:
            host = f"{host}:{c.port}"
        return host + "/"

    def url(self, path: str) -> str:
        return urljoin(self.base_url, path.lstrip("/")) if "://" not in path else path

    @cached_property
    def session(self) -> requests.Session:
        import requests
        from requests.adapters import HTTPAdapter

        s = requests.Session()
        # retries are ours (RetryPolicy); urllib3's would hide 429s and Retry-After from us
        adapter = HTTPAdapter(pool_connections=2, pool_maxsize=self.pool_maxsize, max_retries=0)
        s.mount("http://", adapter)
        s.mount("https://", adapter)
        s.headers.update({"Accept": "application/json", "User-Agent": "s3lander-rest/1"})
        # requests re-reads proxy and CA-bundle variables from the whole environment on EVERY request
        # (about 1 ms each on a worker with a large environment: measured in bench_rest). Resolve them once
        # for the API's base URL, then stop scanning (this also stops ~/.netrc from adding credentials).
        env = s.merge_environment_settings(self.base_url, {}, None, None, None)
        s.proxies.update(env.get("proxies") or {})
        s.verify = env.get("verify", True)
        s.trust_env = False
        return s

    @cached_property
    def channel(self) -> KeepAliveChannel | None:
        """The keep-alive channel for page requests; None when requests must send them (proxies, cookies)."""
        s = self.session
        if s.proxies or s.cookies:
            return None
        return KeepAliveChannel(headers=s.headers, verify=s.verify, cert=s.cert)

    def start(self, method: str, url: str, *, params: dict[str, Any], headers: dict[str, str],
              timeout: float) -> InFlight:
        """Send one page request now, read its answer later (the client's ``start``: fetch ahead).

        The query string is encoded as requests would (``None`` values dropped, lists repeated).
        The request goes over the keep-alive channel; a URL it cannot take, and every request
        after the API first redirected or set a cookie, goes through the requests session
        instead (then the answer is fetched, blocking, when it is asked for).
        """
        # quoted as requests quotes a URL it prepares (the encoded query never needs it)
        full = with_query(_requote(url), params)
        channel = self.channel
        if channel is not None:
            sent = channel.start(method, full, headers=headers, timeout=timeout,
                                 on_answer=partial(self._on_answer, method, full, headers, timeout))
            if sent is not None:
                return sent
        return Answer(partial(self._send_session, method, full, headers, timeout))

    def send(self, method: str, url: str, *, params: dict[str, Any], headers: dict[str, str],
             timeout: float) -> RawResponse:
        """One HTTP request (the client's transport); timeouts and connection errors -> TransportError."""
        return self.start(method, url, params=params, headers=headers, timeout=timeout).result()

    def _on_answer(self, method: str, url: str, headers: dict[str, str], timeout: float, response: Any,
                   raw: RawResponse) -> RawResponse:
        """The channel's answer, unless it needs requests: a redirect is sent again through the
        session (which follows it, dropping credentials across hosts); cookies go into the
        session's jar. Either way the session sends every later request of this hook."""
        redirect = raw.status in REDIRECTS and "location" in response.headers
        cookies = "set-cookie" in response.headers
        if not (redirect or cookies):
            return raw
        import requests
        from requests.cookies import extract_cookies_to_jar

        self.log.info("The API %s: sending this hook's requests through requests from now on",
                      f"redirected {method} {url.split('?', 1)[0]}" if redirect else "set a cookie")
        self._disable_channel()
        if cookies:
            extract_cookies_to_jar(self.session.cookies, requests.Request(method, url, headers=headers), response)
        return self._send_session(method, url, headers, timeout) if redirect else raw

    def _disable_channel(self) -> None:
        channel = self.__dict__.get("channel")
        if channel is not None:
            channel.close()
        self.__dict__["channel"] = None

    def _send_session(self, method: str, url: str, headers: dict[str, str], timeout: float) -> RawResponse:
        """One request through the requests session, its settings resolved once: ``Session.request``'s
        per-call re-merging of proxies, verify and params is skipped (``url`` carries the query)."""
        import requests

        s = self.session
        try:
            prep = s.prepare_request(requests.Request(method, url, headers=headers))
            r = s.send(prep, timeout=timeout, allow_redirects=True, stream=False, verify=s.verify, cert=s.cert,
                       proxies=s.proxies)
            content = r.content
        except (requests.Timeout, requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as e:
            raise _transport_error(e, timeout) from e
        return RawResponse(status=r.status_code, headers=r.headers, content=content, url=r.url)

    def fetch_token(self, url: str, data: dict[str, str], basic: tuple[str, str] | None,
                    timeout: float = 30.0) -> dict[str, Any]:
        """POST a form to a token endpoint; errors never echo the form (it holds the secret)."""
        import requests

        last: Exception | None = None
        for attempt in range(3):
            try:
                r = self.session.post(url, data=data, auth=basic, timeout=timeout)
            except (requests.Timeout, requests.ConnectionError) as e:
                last = e
                time.sleep(0.5 * (attempt + 1))
                continue
            if r.status_code >= 500 or r.status_code == 429:
                last = RuntimeError(f"HTTP {r.status_code}")
                time.sleep(0.5 * (attempt + 1))
                continue
            if r.status_code != 200:
                raise PermissionError(f"token endpoint {url} refused the client credentials of connection "
                                      f"{self.http_conn_id!r}: HTTP {r.status_code} {r.text[:200]}")
            return r.json()
        raise ConnectionError(f"token endpoint {url} failed 3 times: {last}")

    # --- building the strategies of one endpoint --------------------------------------------------
    def auth(self, spec: dict[str, Any]) -> Auth:
        options = dict(spec)
        kind = options.pop("type", "none")
        cls = AUTHS[kind]
        c = self.connection
        if kind == "bearer":
            return cls(token=c.password, **options)
        if kind == "api_key":
            return cls(key=c.password, **options)
        if kind == "oauth2_client_credentials":
            token_url = options.pop("token_url", None) or self.url(options.pop("token_path"))
            options.pop("token_path", None)
            return cls(token_url=token_url, client_id=c.login, client_secret=c.password,
                       fetch_token=self.fetch_token, on_token=_mask, **options)
        return cls(**options)

    def client(self, cfg: EndpointConfig, *, logger: Any = None) -> RestClient:
        rl = cfg.rate_limit
        limiter = RateLimiter(int(rl["requests"]), float(rl["per_seconds"]), margin=float(rl.get("margin", 0.0))) \
            if rl else NoLimit()
        return RestClient(transport=self.send, start=self.start, auth=self.auth(cfg.auth), limiter=limiter,
                          retry=RetryPolicy.from_options(cfg.retry), timeout=cfg.timeout_s, headers=cfg.headers,
                          logger=logger)

    def close(self) -> None:
        channel = self.__dict__.get("channel")
        if channel is not None:
            channel.close()
        if "session" in self.__dict__:
            self.session.close()
