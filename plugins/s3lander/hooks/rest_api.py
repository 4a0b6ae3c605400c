"""RestApiHook: HTTP I/O of the REST pattern over one keep-alive ``requests.Session``.

Built from an Airflow ``http`` connection: ``schema://host:port`` is the base URL, login and
password are the credentials the endpoint's auth strategy needs (OAuth2 client id/secret,
a bearer token or an API key in the password). Secrets are registered with Airflow's log
masker and never logged; timeouts and connection errors surface as ``TransportError`` so
the client's retry policy treats them like 5xx.
"""

from __future__ import annotations

import logging
import time
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urljoin

from airflow.sdk import BaseHook

from s3lander.rest.auth import AUTHS, Auth
from s3lander.rest.client import RawResponse, RestClient, TransportError
from s3lander.rest.throttle import NoLimit, RateLimiter, RetryPolicy

if TYPE_CHECKING:
    import requests

    from s3lander.rest.config import EndpointConfig


def _mask(secret: str | None) -> None:
    if secret:
        try:
            from airflow.sdk.log import mask_secret

            mask_secret(secret)
        except Exception:  # noqa: BLE001 - masking is best effort outside a task
            logging.getLogger(__name__).debug("secret masker unavailable")


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


class RestApiHook(BaseHook):
    """Session, base URL and credentials of one API connection.

    :param http_conn_id: the Airflow ``http`` connection (host, schema, port, login, password)
    :param pool_maxsize: keep-alive connections kept open to the API
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

    def send(self, method: str, url: str, *, params: dict[str, Any], headers: dict[str, str],
             timeout: float) -> RawResponse:
        """One HTTP request (the client's transport); timeouts and connection errors -> TransportError.

        The per-page hot path: the query string is encoded here as requests would (``None``
        values dropped, lists repeated) and the prepared request is sent with the session's
        settings resolved once, skipping ``Session.request``'s per-call re-merging of proxies,
        verify and params (measured: about 0.1 ms of CPU per page in bench_rest).
        """
        import requests

        s = self.session
        try:
            prep = s.prepare_request(requests.Request(method, with_query(url, params), headers=headers))
            r = s.send(prep, timeout=timeout, allow_redirects=True, stream=False, verify=s.verify, cert=s.cert,
                       proxies=s.proxies)
            content = r.content
        except requests.Timeout as e:
            raise TransportError("timeout", f"no answer within {timeout:g} s") from e
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as e:
            raise TransportError("connection", type(e).__name__) from e
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
        return RestClient(transport=self.send, auth=self.auth(cfg.auth), limiter=limiter,
                          retry=RetryPolicy.from_options(cfg.retry), timeout=cfg.timeout_s, headers=cfg.headers,
                          logger=logger)

    def close(self) -> None:
        if "session" in self.__dict__:
            self.session.close()
