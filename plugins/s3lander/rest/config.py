"""Endpoint declarations: ``include/config/rest_endpoints.yaml`` validated into dataclasses.

The file has ``defaults`` (for every endpoint), ``sources`` (what endpoints of one API share:
connection, auth, rate limit, retry) and ``endpoints`` (path, records path, paginator,
params, incremental window parameters, landing format). An endpoint's keys override its
source's, which override the defaults. ``dags`` declares DAGs generated from config
(``dags/rest_api_dags.py``). Every error names the file and the endpoint.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from s3lander.config import ConfigError
from s3lander.landing.formats import FORMATS, JsonLinesGzipFormat
from s3lander.landing.layout import LayoutError, check_segment
from s3lander.rest.auth import AUTHS
from s3lander.rest.paginators import make_paginator
from s3lander.rest.records import PathError, compile_path
from s3lander.rest.throttle import RetryPolicy

CONFIG_FILE = "rest_endpoints.yaml"

ENDPOINT_KEYS = {"source", "conn_id", "path", "method", "records", "paginator", "auth", "params", "headers",
                 "incremental", "rate_limit", "retry", "timeout_s", "format", "format_options", "dataset",
                 "pages_per_part", "max_part_rows", "max_part_bytes", "description", "emit"}
SOURCE_KEYS = ENDPOINT_KEYS - {"path", "records", "dataset", "emit", "source"}
INCREMENTAL_KEYS = {"start_param", "end_param", "format"}
TIME_FORMATS = {"iso": "%Y-%m-%dT%H:%M:%SZ", "date": "%Y-%m-%d", "epoch": "epoch", "epoch_ms": "epoch_ms"}


@dataclass(frozen=True)
class EndpointConfig:
    """One endpoint: where it is, how to page through it, how to authenticate, where it lands."""

    name: str
    source: str
    conn_id: str
    path: str
    records: str
    paginator: dict[str, Any]
    auth: dict[str, Any] = field(default_factory=lambda: {"type": "none"})
    method: str = "GET"
    params: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    incremental: dict[str, str] | None = None
    rate_limit: dict[str, float] | None = None
    retry: dict[str, Any] = field(default_factory=dict)
    timeout_s: float = 30.0
    format: str = "jsonl.gz"
    format_options: dict[str, Any] = field(default_factory=dict)
    dataset: str = ""
    pages_per_part: int = 100
    max_part_rows: int = 1_000_000
    max_part_bytes: int = 128 * 1024 * 1024
    description: str = ""
    emit: dict[str, Any] | None = None

    def fingerprint(self, **extra: Any) -> str:
        """A hash of everything that decides which objects a run writes (for checkpoint validity)."""
        d = {k: v for k, v in asdict(self).items() if k not in ("description", "retry", "rate_limit", "timeout_s")}
        raw = json.dumps({**d, **extra}, sort_keys=True, default=str)
        return hashlib.sha256(raw.encode()).hexdigest()[:16]


#: gzip level of JSON Lines parts unless format_options.level says otherwise: level 3 costs 2.3x less
#: CPU than 6 for 10% larger objects on API pages (measured in bench_rest; level 1: +18%, 9: 3.4x CPU)
JSONL_GZIP_LEVEL = 3


def _format_options(merged: Mapping[str, Any]) -> dict[str, Any]:
    options = dict(merged.get("format_options") or {})
    if FORMATS[str(merged.get("format", "jsonl.gz"))] is JsonLinesGzipFormat:
        options.setdefault("level", JSONL_GZIP_LEVEL)
    return options


def _merge(*layers: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for layer in layers:
        out.update(layer or {})
    return out


def build_endpoint(name: str, raw: Mapping[str, Any], *, sources: Mapping[str, Any] | None = None,
                   defaults: Mapping[str, Any] | None = None, where: str = CONFIG_FILE) -> EndpointConfig:
    """Validate one endpoint entry (merged with its source and the defaults)."""
    what = f"{where}: endpoint {name!r}"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{what} must be a mapping")
    unknown = set(raw) - ENDPOINT_KEYS
    if unknown:
        raise ConfigError(f"{what} has unknown keys {sorted(unknown)}; allowed: {sorted(ENDPOINT_KEYS)}")
    source_name = raw.get("source", name)
    source = (sources or {}).get(source_name, {}) if "source" in raw else {}
    if "source" in raw and source_name not in (sources or {}):
        raise ConfigError(f"{what} refers to source {source_name!r}, which is not under 'sources'")
    bad = set(source) - SOURCE_KEYS
    if bad:
        raise ConfigError(f"{where}: source {source_name!r} has unknown keys {sorted(bad)}")
    merged = _merge(defaults or {}, source, raw)
    for key in ("conn_id", "path", "records", "paginator"):
        if key not in merged:
            raise ConfigError(f"{what} needs {key!r}")
    try:
        check_segment(str(source_name), what="source")
        check_segment(merged.get("dataset") or name, what="dataset")
    except LayoutError as e:
        raise ConfigError(f"{what}: {e}") from None
    if not str(merged["path"]).startswith(("/", "http://", "https://")):
        raise ConfigError(f"{what}: path {merged['path']!r} must start with '/' (relative to the connection)")
    try:
        compile_path(str(merged["records"]))
        make_paginator(merged["paginator"])
    except (PathError, ValueError) as e:
        raise ConfigError(f"{what}: {e}") from None
    auth = dict(merged.get("auth") or {"type": "none"})
    if auth.get("type") not in AUTHS:
        raise ConfigError(f"{what}: unknown auth type {auth.get('type')!r}; choose one of {sorted(AUTHS)}")
    if auth["type"] == "oauth2_client_credentials" and not (auth.get("token_path") or auth.get("token_url")):
        raise ConfigError(f"{what}: oauth2_client_credentials needs token_path (or token_url)")
    for secretish in ("token", "key", "client_secret", "password"):
        if secretish in auth:
            raise ConfigError(f"{what}: auth.{secretish} must not be in config; put secrets in the connection "
                              f"{merged['conn_id']!r} (password)")
    inc = merged.get("incremental")
    if inc is not None:
        if not isinstance(inc, Mapping) or set(inc) - INCREMENTAL_KEYS or not (inc.get("start_param")
                                                                               or inc.get("end_param")):
            raise ConfigError(f"{what}: incremental needs start_param and/or end_param "
                              f"(keys {sorted(INCREMENTAL_KEYS)})")
        if inc.get("format", "iso") not in TIME_FORMATS:
            raise ConfigError(f"{what}: incremental.format must be one of {sorted(TIME_FORMATS)}")
    rl = merged.get("rate_limit")
    if rl is not None and (not isinstance(rl, Mapping) or float(rl.get("requests", 0)) <= 0
                           or float(rl.get("per_seconds", 0)) <= 0):
        raise ConfigError(f"{what}: rate_limit needs positive 'requests' and 'per_seconds'")
    try:
        RetryPolicy.from_options(merged.get("retry"))
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{what}: retry: {e}") from None
    if merged.get("format", "jsonl.gz") not in FORMATS:
        raise ConfigError(f"{what}: unknown format {merged.get('format')!r}; choose one of {sorted(FORMATS)}")
    for key in ("pages_per_part", "max_part_rows", "max_part_bytes"):
        if key in merged and int(merged[key]) < 1:
            raise ConfigError(f"{what}: {key} must be >= 1")
    emit = merged.get("emit")
    if emit is not None and (not isinstance(emit, Mapping) or "field" not in emit):
        raise ConfigError(f"{what}: emit needs 'field' (the record field to return, e.g. id) and optionally 'as'")
    return EndpointConfig(
        name=name, source=str(source_name), conn_id=str(merged["conn_id"]), path=str(merged["path"]),
        records=str(merged["records"]), paginator=dict(merged["paginator"]), auth=auth,
        method=str(merged.get("method", "GET")).upper(), params=dict(merged.get("params") or {}),
        headers=dict(merged.get("headers") or {}), incremental=dict(inc) if inc else None,
        rate_limit=dict(rl) if rl else None, retry=dict(merged.get("retry") or {}),
        timeout_s=float(merged.get("timeout_s", 30.0)), format=str(merged.get("format", "jsonl.gz")),
        format_options=_format_options(merged), dataset=str(merged.get("dataset") or name),
        pages_per_part=int(merged.get("pages_per_part", 100)),
        max_part_rows=int(merged.get("max_part_rows", 1_000_000)),
        max_part_bytes=int(merged.get("max_part_bytes", 128 * 1024 * 1024)),
        description=str(merged.get("description", "")), emit=dict(emit) if emit else None)


def load_endpoints(doc: Mapping[str, Any] | None = None, *, where: str = CONFIG_FILE) -> dict[str, EndpointConfig]:
    """All endpoints of the config file (or of ``doc``), validated."""
    if doc is None:
        from s3lander.config import load_yaml

        doc = load_yaml(CONFIG_FILE)
    endpoints = doc.get("endpoints")
    if not isinstance(endpoints, Mapping) or not endpoints:
        raise ConfigError(f"{where} needs a non-empty 'endpoints' mapping")
    return {name: build_endpoint(name, raw, sources=doc.get("sources"), defaults=doc.get("defaults"), where=where)
            for name, raw in endpoints.items()}


def endpoint(name: str) -> EndpointConfig:
    eps = load_endpoints()
    try:
        return eps[name]
    except KeyError:
        raise ConfigError(f"{CONFIG_FILE} has no endpoint {name!r}; known: {sorted(eps)}") from None


def window_params(inc: Mapping[str, str] | None, start: Any, end: Any) -> dict[str, Any]:
    """The query parameters that restrict a pull to ``[start, end)`` (UTC datetimes)."""
    if not inc:
        return {}
    fmt = TIME_FORMATS[inc.get("format", "iso")]

    def render(ts: Any) -> Any:
        if fmt == "epoch":
            return int(ts.timestamp())
        if fmt == "epoch_ms":
            return int(ts.timestamp() * 1000)
        return ts.strftime(fmt)

    out: dict[str, Any] = {}
    if inc.get("start_param"):
        out[inc["start_param"]] = render(start)
    if inc.get("end_param"):
        out[inc["end_param"]] = render(end)
    return out
