"""RestApiHook's keep-alive channel against a real HTTP/1.1 server on loopback (stdlib ``http.server``).

What the page loop relies on: a request goes out before its answer is read, one connection is
kept alive, a connection the server dropped is replaced, failures are ``TransportError``s, and
what the channel does not do (redirects, cookies) is handed to the requests session.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from s3lander.hooks.rest_api import RestApiHook
from s3lander.rest.client import TransportError

pytestmark = pytest.mark.integration


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    disable_nagle_algorithm = True  # headers and body are two writes: no 40-ms delayed-ACK stalls
    server: Server

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None, *, length: int | None = None,
              close: bool = False) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        if close:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        path, _, query = self.path.partition("?")
        self.server.log.append({"path": path, "query": query, "port": self.client_address[1],
                                "cookie": self.headers.get("Cookie"), "auth": self.headers.get("Authorization"),
                                "accept_encoding": self.headers.get("Accept-Encoding")})
        body = json.dumps({"path": path, "query": query}).encode()
        if path == "/slow":
            time.sleep(1.0)
        if path == "/redirect":
            self._send(302, b"", {"Location": "/items?from=redirect"})
        elif path == "/cookie":
            self._send(200, body, {"Set-Cookie": "sid=abc; Path=/", "Content-Type": "application/json"})
        elif path == "/gzip":
            self._send(200, gzip.compress(body), {"Content-Encoding": "gzip", "Content-Type": "application/json"})
        elif path == "/close":  # says so
            self._send(200, body, {"Content-Type": "application/json"}, close=True)
            self.close_connection = True
        elif path == "/drop":  # closes the connection after answering, without a word (an idle timeout)
            self._send(200, body, {"Content-Type": "application/json"})
            self.close_connection = True
        elif path == "/truncated":  # promises more bytes than it sends, then hangs up
            self._send(200, body[:10], {"Content-Type": "application/json"}, length=len(body))
            self.close_connection = True
        else:
            self._send(200, body, {"Content-Type": "application/json"})


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.log: list[dict[str, Any]] = []


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server()
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def hook(server: Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[RestApiHook]:
    monkeypatch.setenv("AIRFLOW_CONN_CHANNEL_TEST", json.dumps({"conn_type": "http", "host": "127.0.0.1",
                                                                "port": server.server_port, "schema": "http"}))
    h = RestApiHook("channel_test")
    yield h
    h.close()


def get(hook: RestApiHook, path: str, timeout: float = 5.0, **params: Any):
    return hook.send("GET", hook.url(path), params=params, headers={"Authorization": "Bearer t"}, timeout=timeout)


def wait_for(cond: Any, what: str) -> None:
    deadline = time.monotonic() + 5
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def test_request_is_on_the_wire_before_its_answer_is_read(hook, server):
    sent = hook.start("GET", hook.url("/items"), params={"offset": 3, "skip": None}, headers={}, timeout=5)
    wait_for(lambda: server.log, "the server to receive the request")  # result() has not been called
    raw = sent.result()
    assert raw.status == 200 and json.loads(raw.content) == {"path": "/items", "query": "offset=3"}
    assert raw.url == hook.url("/items") + "?offset=3"
    assert raw.headers["content-type"] == "application/json"  # case-insensitive, as requests gives them


def test_one_keep_alive_connection_and_the_session_headers(hook, server):
    for i in range(20):
        assert get(hook, "/items", offset=i).status == 200
    assert len({r["port"] for r in server.log}) == 1
    assert server.log[0]["auth"] == "Bearer t" and "gzip" in server.log[0]["accept_encoding"]


def test_gzip_bodies_are_decoded(hook):
    assert json.loads(get(hook, "/gzip").content) == {"path": "/gzip", "query": ""}


@pytest.mark.parametrize("path", ["/close", "/drop"])
def test_a_connection_the_server_closed_is_replaced(hook, server, path):
    assert get(hook, path).status == 200
    time.sleep(0.1)  # let the server's close arrive, as an idle timeout would
    assert get(hook, "/items").status == 200
    assert server.log[0]["port"] != server.log[1]["port"]


def test_timeouts_and_broken_answers_are_transport_errors_and_the_next_request_works(hook, server):
    with pytest.raises(TransportError) as e:
        get(hook, "/slow", timeout=0.3)
    assert e.value.kind == "timeout"
    with pytest.raises(TransportError) as e:
        get(hook, "/truncated")
    assert e.value.kind == "connection"
    assert get(hook, "/items").status == 200


def test_a_discarded_request_frees_the_connection(hook, server):
    sent = hook.start("GET", hook.url("/items"), params={"n": 1}, headers={}, timeout=5)
    wait_for(lambda: server.log, "the request")
    sent.discard()
    assert get(hook, "/items", n=2).status == 200
    assert [r["query"] for r in server.log] == ["n=1", "n=2"] and server.log[0]["port"] != server.log[1]["port"]


def test_a_redirect_is_followed_through_the_requests_session(hook, server):
    raw = get(hook, "/redirect")
    assert raw.status == 200 and json.loads(raw.content) == {"path": "/items", "query": "from=redirect"}
    assert raw.url.endswith("/items?from=redirect")
    assert hook.channel is None  # the session sends from now on
    assert get(hook, "/items", n=1).status == 200


def test_cookies_go_to_the_session_jar_and_are_sent_back(hook, server):
    assert get(hook, "/cookie").status == 200
    assert hook.channel is None
    get(hook, "/items")
    assert server.log[-1]["cookie"] == "sid=abc"


def test_urls_are_quoted_as_requests_quotes_them(hook, server):
    raw = get(hook, "/items with space", q="a b/ü")
    assert server.log[-1]["path"] == "/items%20with%20space" and server.log[-1]["query"] == "q=a+b%2F%C3%BC"
    assert raw.url.endswith("/items%20with%20space?q=a+b%2F%C3%BC")


def _self_signed(tmp_path: Any) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 (cert file, key file)."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_file), str(key_file)


@pytest.mark.parametrize("trusted", [True, False])
def test_https_verifies_the_server_against_the_sessions_ca_bundle(tmp_path, monkeypatch, trusted):
    import ssl

    import certifi

    cert_file, key_file = _self_signed(tmp_path)
    srv = Server()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_file, key_file)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("AIRFLOW_CONN_TLS_TEST", json.dumps({"conn_type": "http", "host": "127.0.0.1",
                                                                "port": srv.server_port, "schema": "https"}))
        # requests' own variable, resolved once by the hook's session: our certificate, or a bundle without it
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", cert_file if trusted else certifi.where())
        hook = RestApiHook("tls_test")
        try:
            if trusted:
                for i in range(3):
                    assert get(hook, "/items", i=i).status == 200
                assert hook.channel is not None and len({r["port"] for r in srv.log}) == 1
            else:
                with pytest.raises(TransportError) as e:
                    get(hook, "/items")
                assert e.value.kind == "connection" and "SSL" in str(e.value)
        finally:
            hook.close()
    finally:
        srv.shutdown()
        srv.server_close()
