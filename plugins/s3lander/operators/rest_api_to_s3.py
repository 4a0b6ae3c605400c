"""RestApiToS3Operator: one paginated REST endpoint -> one interval of one dataset on S3.

Pages are fetched one at a time (``RestClient``: auth, request budget, retries) and written
through the landing contract as they arrive, so memory is bounded by one page; the request
for the next page is already on its way while a page is written (fetch ahead: the writing
hides behind the server's time; the next answer waits in the socket). Parts are cut
at page boundaries (``pages_per_part`` pages, or earlier at ``max_part_rows`` rows /
``max_part_bytes`` response bytes), which makes the object set a function of the pages only:
a rerun of the same interval writes the same keys and bytes.

Resumable retries: after each finished part (when more pages follow) a checkpoint goes to
``<dataset>/_state/checkpoint.<stem>.<start>_<end>.json`` with the parts written so far and
the paginator's position. A retry of the interval with the same endpoint config finds it,
checks its parts still exist and continues with the next page: no page is fetched twice into
the output and none is skipped. The checkpoint is deleted once the interval is published.

Fan-out: with ``publish=False`` the operator writes its parts (named ``<stem>-NNNNN``) into
the interval's partition without publishing and returns their entries;
``RestApiFanoutPublishOperator`` then publishes all of them under one manifest.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from contextlib import closing
from functools import cached_property
from typing import TYPE_CHECKING, Any

from s3lander.landing.layout import check_segment
from s3lander.landing.manifest import FileEntry
from s3lander.operators.base import LandingOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

    from s3lander.hooks.rest_api import RestApiHook
    from s3lander.landing.intervals import Interval
    from s3lander.landing.publisher import IntervalPublisher
    from s3lander.landing.writer import PartWriter
    from s3lander.rest.config import EndpointConfig

CHECKPOINT_VERSION = 1


def default_stem(path_params: Mapping[str, Any] | None) -> str:
    """``part`` for a plain endpoint; ``part-<values>`` for one item of a fan-out (e.g. an album id)."""
    if not path_params:
        return "part"
    tail = "-".join(re.sub(r"[^A-Za-z0-9_.-]", "_", str(v)) for v in path_params.values())
    return check_segment(f"part-{tail}"[:100], what="part stem")


def checkpoint_name(stem: str, interval: Interval) -> str:
    return f"checkpoint.{stem}.{interval.start:%Y%m%dT%H%M%S}_{interval.end:%Y%m%dT%H%M%S}.json"


class RestApiToS3Operator(LandingOperator):
    """Land one endpoint declared in ``include/config/rest_endpoints.yaml`` for the run's interval.

    :param endpoint: name of the endpoint in the config file (templated)
    :param path_params: values for ``{placeholders}`` in the endpoint path, e.g. ``{"album_id": ...}`` (templated)
    :param query_params: extra query parameters, merged over the config's (templated)
    :param dataset: dataset to land in (default: the endpoint's ``dataset``) (templated)
    :param stem: part-name stem (default ``part``, or ``part-<path params>``) (templated)
    :param publish: publish the interval (default); False writes parts only and returns their entries (fan-out)
    :param http_conn_id: override the endpoint's connection
    :param file_format: override the endpoint's format (``jsonl.gz`` or ``parquet``)
    :param source: source segment of the keys (default: the endpoint's source) (templated)
    """

    template_fields: Sequence[str] = ("source", "endpoint", "path_params", "query_params", "dataset", "stem")
    template_fields_renderers = {"path_params": "json", "query_params": "json"}
    ui_color = "#c5e0b4"

    def __init__(self, *, endpoint: str, path_params: dict[str, Any] | None = None,
                 query_params: dict[str, Any] | None = None, dataset: str | None = None, stem: str | None = None,
                 publish: bool = True, http_conn_id: str | None = None, file_format: str | None = None,
                 source: str | None = None, **kwargs: Any) -> None:
        super().__init__(source=source or "", **kwargs)
        self.endpoint = endpoint
        self.path_params = path_params
        self.query_params = query_params
        self.dataset = dataset
        self.stem = stem
        self.publish = publish
        self.http_conn_id = http_conn_id
        self.file_format = file_format

    @cached_property
    def config(self) -> EndpointConfig:
        from s3lander.rest.config import endpoint

        return endpoint(self.endpoint)

    @cached_property
    def api(self) -> RestApiHook:
        from s3lander.hooks.rest_api import RestApiHook

        return RestApiHook(self.http_conn_id or self.config.conn_id)

    def execute(self, context: Context) -> Any:
        from s3lander.landing.formats import get_format
        from s3lander.rest.config import window_params
        from s3lander.rest.paginators import PageRequest, make_paginator

        cfg = self.config
        self.source = self.source or cfg.source
        interval = self.interval(context)
        dataset, stem = self.dataset or cfg.dataset, self.stem or default_stem(self.path_params)
        fmt_name = self.file_format or cfg.format
        publisher = self.publisher(context, dataset)
        try:
            path = cfg.path.format(**(self.path_params or {}))
        except KeyError as e:
            raise ValueError(f"endpoint {cfg.name!r} path {cfg.path!r} needs path_params {e}") from None
        request = PageRequest(url=self.api.url(path), method=cfg.method, params={
            **cfg.params, **(self.query_params or {}), **window_params(cfg.incremental, interval.start, interval.end)})
        landing = _PagedLanding(publisher=publisher, fmt=get_format(fmt_name, **cfg.format_options), cfg=cfg,
                                stem=stem, interval=interval, log=self.log,
                                fingerprint=cfg.fingerprint(url=request.url, params=request.params, stem=stem,
                                                            format=fmt_name))
        resume = landing.load_checkpoint()
        client, paginator = self.api.client(cfg, logger=self.log), make_paginator(cfg.paginator)
        self.log.info("Landing %s %s for %s into %s (%s)", cfg.method, cfg.path, interval,
                      publisher.location.uri, f"resuming after page {resume['page']}" if resume else "from page 1")
        try:
            # closing(): a failure while landing a page drops the request already sent for the next one
            with closing(client.pages(request, paginator, cfg.records, resume=resume)) as pages:
                for page in pages:
                    landing.add(page, more=paginator.has_next,
                                checkpoint=lambda n=page.number: client.checkpoint(client.request, paginator, n))
            files = landing.close()
        except BaseException:
            landing.abort()
            publisher.close()
            raise
        finally:
            self.api.close()
        stats = client.stats
        self.log.info("Fetched %d page(s), %d row(s) in %d request(s): %d retries, %d x 429, %d x 5xx, "
                      "%d transport errors, %d re-authentications, %.1f s waiting on the rate limit",
                      landing.pages, landing.rows, stats.requests, stats.retries, stats.throttled_429,
                      stats.server_errors, stats.transport_errors, stats.reauthentications, stats.limiter_wait_s)
        if not self.publish:
            landing.drop_checkpoint()
            publisher.close()
            return {"files": [f.to_dict() for f in files], "rows": landing.rows, "pages": landing.pages,
                    "format": fmt_name, "emitted": landing.emitted}
        manifest = publisher.publish(files, fmt=get_format(fmt_name).name, schema=landing.schema(), extra={
            "endpoint": cfg.name, "path": path, "pages": landing.pages, "requests": stats.requests,
            "retries": stats.retries, "throttled_429": stats.throttled_429,
            "resumed_after_page": resume["page"] if resume else 0})
        landing.drop_checkpoint()
        self.log.info("Published %d row(s) in %d object(s): s3://%s/%s", manifest.rows, len(manifest.files),
                      publisher.bucket, publisher.manifest_key)
        if cfg.emit:
            return landing.emitted
        return {"manifest_key": publisher.manifest_key, "rows": manifest.rows, "files": len(manifest.files)}


class _PagedLanding:
    """Pages in, page-aligned parts out, with a checkpoint after each part (the operator's run state)."""

    def __init__(self, *, publisher: IntervalPublisher, fmt: Any, cfg: EndpointConfig, stem: str,
                 interval: Interval, fingerprint: str, log: Any) -> None:
        from s3lander.progress import Progress

        self.publisher, self.fmt, self.cfg, self.stem = publisher, fmt, cfg, stem
        self.interval, self.fingerprint, self.log = interval, fingerprint, log
        self.key = publisher.location.state_key(checkpoint_name(stem, interval))
        self.files: list[FileEntry] = []
        self.emitted: list[Any] = []
        self.pages = 0
        self._writer: PartWriter | None = None
        self._part = {"pages": 0, "rows": 0, "bytes": 0}
        self._rows_done = 0
        self._checkpointed = False
        self.progress = Progress(f"{cfg.name} -> {publisher.location.name}", unit="pages", logger=log)

    @property
    def rows(self) -> int:
        return self._rows_done + self._part["rows"]

    # --- checkpoints ---------------------------------------------------------------------------------
    def load_checkpoint(self) -> dict[str, Any] | None:
        store, bucket = self.publisher.store, self.publisher.bucket
        state = store.get_json(bucket, self.key)
        if not state:
            return None
        self._checkpointed = True
        if state.get("version") != CHECKPOINT_VERSION or state.get("fingerprint") != self.fingerprint \
                or state.get("interval") != self.interval.to_dict():
            self.log.warning("Ignoring checkpoint s3://%s/%s: written for another config or window", bucket, self.key)
            return None
        files = [FileEntry(**f) for f in state["files"]]
        present = set(store.list_keys(bucket, self.publisher.prefix))
        missing = [f.key for f in files if f.key not in present]
        if missing:
            self.log.warning("Ignoring checkpoint s3://%s/%s: %d of its parts are gone (e.g. %s); starting over",
                             bucket, self.key, len(missing), missing[0])
            return None
        self.files, self.emitted = files, list(state.get("emitted") or [])
        self.pages, self._rows_done = int(state["position"]["page"]), sum(f.rows for f in files)
        self.publisher.begin()  # unpublish, as a fresh start would
        self.log.info("Resuming from checkpoint: %d page(s), %d row(s) in %d part(s) already landed",
                      self.pages, self._rows_done, len(files))
        return state["position"]

    def _save_checkpoint(self, position: dict[str, Any]) -> None:
        import json

        state = {"version": CHECKPOINT_VERSION, "fingerprint": self.fingerprint, "interval": self.interval.to_dict(),
                 "position": position, "files": [f.to_dict() for f in self.files], "emitted": self.emitted}
        self.publisher.store.put_bytes(self.publisher.bucket, self.key, json.dumps(state).encode())
        self._checkpointed = True

    def drop_checkpoint(self) -> None:
        if self._checkpointed:
            self.publisher.store.delete(self.publisher.bucket, [self.key])
            self._checkpointed = False

    # --- pages -> parts ------------------------------------------------------------------------------
    def add(self, page: Any, *, more: bool, checkpoint: Any) -> None:
        records = page.records
        if records:
            if self._writer is None:
                self._writer = self.publisher.part_writer(self.fmt, max_rows=2**62, max_bytes=2**62, stem=self.stem,
                                                          start_index=len(self.files))
            self._writer.write(records)
        if self.cfg.emit:
            self._emit(records, page)
        self.pages += 1
        p = self._part
        p["pages"] += 1
        p["rows"] += len(records)
        p["bytes"] += page.nbytes
        self.progress.add(1, nbytes=page.nbytes)
        if more and (p["pages"] >= self.cfg.pages_per_part or p["rows"] >= self.cfg.max_part_rows
                     or p["bytes"] >= self.cfg.max_part_bytes):
            self._finish_part()
            self._save_checkpoint(checkpoint())

    def _emit(self, records: list[Any], page: Any) -> None:
        emit = self.cfg.emit or {}
        fld, alias, cap = emit["field"], emit.get("as"), int(emit.get("max", 1024))
        for r in records:
            if not isinstance(r, dict) or r.get(fld) in (None, ""):
                raise ValueError(f"page {page.number} of {page.url}: a record has no {fld!r} to emit")
            self.emitted.append({alias: r[fld]} if alias else r[fld])
        if len(self.emitted) > cap:
            raise ValueError(f"endpoint {self.cfg.name!r} emitted more than {cap} values (emit.max); narrow the "
                             "window or raise the cap (and Airflow's max_map_length)")

    def _finish_part(self) -> None:
        if self._writer is not None:
            self.files.extend(self._writer.close())
            self._writer = None
        self._rows_done += self._part["rows"]
        self._part = {"pages": 0, "rows": 0, "bytes": 0}

    def close(self) -> list[FileEntry]:
        self._finish_part()
        self.progress.done()
        return list(self.files)

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.abort()
            self._writer = None

    def schema(self) -> list[Any]:
        return []


class RestApiFanoutPublishOperator(LandingOperator):
    """Publish the parts a fan-out of ``RestApiToS3Operator(publish=False)`` tasks wrote, as one interval.

    One dataset, one manifest per interval for all items (e.g. every album's tracks), published
    only when every mapped task succeeded: readers never see some albums of a day without the others.

    :param dataset: the dataset the mapped tasks wrote to (templated)
    :param results: the mapped tasks' return values (an XComArg, e.g. ``tracks.output``) (templated)
    :param file_format: the format they wrote
    """

    template_fields: Sequence[str] = ("source", "dataset", "results")

    def __init__(self, *, dataset: str, results: Any, file_format: str = "jsonl.gz", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dataset = dataset
        self.results = results
        self.file_format = file_format

    def execute(self, context: Context) -> Any:
        from s3lander.landing.formats import get_format

        results = list(self.results or [])
        files = [FileEntry(**f) for r in results if r for f in r["files"]]
        publisher = self.publisher(context, self.dataset)
        manifest = publisher.publish(files, fmt=get_format(self.file_format).name, extra={
            "items": len(results), "pages": sum(r["pages"] for r in results if r)})
        self.log.info("Published %d row(s) of %d item(s) in %d object(s): s3://%s/%s", manifest.rows, len(results),
                      len(files), publisher.bucket, publisher.manifest_key)
        return {"manifest_key": publisher.manifest_key, "rows": manifest.rows, "items": len(results)}
