"""Authentication strategies: none, static bearer, API key (header or query), OAuth2 client credentials.

Secrets come from the Airflow connection (never from config or code). A strategy adds its
credentials to the headers/params of one send (``apply``), so the request kept for
checkpoints and error messages never holds them; ``secret_params`` names query parameters
to redact from any URL that is logged. OAuth2 fetches tokens through an injected
``fetch_token`` callable (the hook's I/O) and an injected clock.
"""

from __future__ import annotations

import time
from abc import ABC
from collections.abc import Callable
from typing import Any, ClassVar

FetchToken = Callable[[str, dict[str, str], "tuple[str, str] | None"], dict[str, Any]]


class AuthError(RuntimeError):
    """Credentials are missing or were refused; the message never contains them."""


class Auth(ABC):
    name: ClassVar[str]
    secret_params: frozenset[str] = frozenset()

    def apply(self, headers: dict[str, str], params: dict[str, Any]) -> None:
        """Add credentials to one request's headers or query parameters."""

    def on_unauthorized(self) -> bool:
        """A 401 came back: return True if renewed credentials make one more try worthwhile."""
        return False


class NoAuth(Auth):
    name = "none"


class BearerToken(Auth):
    """A static token: ``Authorization: Bearer <token>`` (the connection's password)."""

    name = "bearer"

    def __init__(self, *, token: str) -> None:
        if not token:
            raise AuthError("bearer auth needs a token: set it as the connection's password")
        self._token = token

    def apply(self, headers: dict[str, str], params: dict[str, Any]) -> None:
        headers["Authorization"] = f"Bearer {self._token}"


class ApiKey(Auth):
    """An API key in a header (default ``X-API-Key``) or a query parameter (``location: query``)."""

    name = "api_key"

    def __init__(self, *, key: str, param: str = "X-API-Key", location: str = "header") -> None:
        if not key:
            raise AuthError("api_key auth needs a key: set it as the connection's password")
        if location not in ("header", "query"):
            raise ValueError(f"api_key location must be 'header' or 'query', got {location!r}")
        self._key, self.param, self.location = key, param, location
        self.secret_params = frozenset({param}) if location == "query" else frozenset()

    def apply(self, headers: dict[str, str], params: dict[str, Any]) -> None:
        (headers if self.location == "header" else params)[self.param] = self._key


class OAuth2ClientCredentials(Auth):
    """OAuth2 client credentials (RFC 6749 4.4): fetch a token, renew it before it expires.

    The token is renewed ``renew_margin_s`` before ``expires_in`` runs out (at most a tenth of
    its lifetime, so short-lived tokens are not renewed on every request), and once more when
    the API answers 401 anyway (revoked or clock skew); a second 401 in a row is final.

    :param send_as: ``body`` (client id/secret in the form) or ``basic`` (HTTP Basic header)
    """

    name = "oauth2_client_credentials"

    def __init__(self, *, token_url: str, client_id: str, client_secret: str, fetch_token: FetchToken,
                 scope: str | None = None, send_as: str = "body", renew_margin_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic, on_token: Callable[[str], None] | None = None) -> None:
        if not client_id or not client_secret:
            raise AuthError("oauth2_client_credentials needs the client id as the connection's login and the "
                            "client secret as its password")
        if send_as not in ("body", "basic"):
            raise ValueError(f"send_as must be 'body' or 'basic', got {send_as!r}")
        self.token_url, self.scope, self.send_as = token_url, scope, send_as
        self._client_id, self._secret = client_id, client_secret
        self._fetch, self.clock, self.renew_margin_s = fetch_token, clock, renew_margin_s
        self._on_token = on_token
        self._token: str | None = None
        self._expires_at = 0.0
        self.renewals = 0

    def _renew(self) -> None:
        data = {"grant_type": "client_credentials"}
        if self.scope:
            data["scope"] = self.scope
        basic = None
        if self.send_as == "basic":
            basic = (self._client_id, self._secret)
        else:
            data.update(client_id=self._client_id, client_secret=self._secret)
        now = self.clock()
        answer = self._fetch(self.token_url, data, basic)
        token = answer.get("access_token") if isinstance(answer, dict) else None
        if not token:
            raise AuthError(f"the token endpoint {self.token_url} answered without an access_token "
                            f"(keys: {sorted(answer) if isinstance(answer, dict) else type(answer).__name__})")
        if str(answer.get("token_type", "Bearer")).lower() != "bearer":
            raise AuthError(f"the token endpoint {self.token_url} issued a {answer.get('token_type')!r} token, "
                            "not a Bearer token")
        expires_in = float(answer.get("expires_in") or 3600)
        margin = min(self.renew_margin_s, expires_in / 10)
        self._token, self._expires_at = str(token), now + expires_in - margin
        self.renewals += 1
        if self._on_token is not None:
            self._on_token(self._token)  # e.g. register with the log secrets masker

    def apply(self, headers: dict[str, str], params: dict[str, Any]) -> None:
        if self._token is None or self.clock() >= self._expires_at:
            self._renew()
        headers["Authorization"] = f"Bearer {self._token}"

    def on_unauthorized(self) -> bool:
        self._token = None  # the next apply() fetches a new one
        return True


AUTHS: dict[str, type[Auth]] = {
    "none": NoAuth,
    "bearer": BearerToken,
    "api_key": ApiKey,
    "oauth2_client_credentials": OAuth2ClientCredentials,
}
