"""SftpToS3Operator: land complete, verified partner files from an SFTP inbox into S3, exactly once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from s3lander.memory import prepare_task_process
from s3lander.operators.base import LandingOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

    from s3lander.hooks.sftp_fast import FastSftpHook, SftpPool
    from s3lander.landing.manifest import FileEntry, Manifest
    from s3lander.landing.publisher import IntervalPublisher
    from s3lander.sftp.config import SftpSource
    from s3lander.sftp.ledger import Ledger, LedgerEntry
    from s3lander.sftp.rules import Candidate

#: S3 part size and parts in flight per file: bounds memory to ~(inflight + 2) x chunk per large file
CHUNK_SIZE = 8 * 1024 * 1024
UPLOADS_PER_FILE = 4
#: large files (more than one part) transferred at once; small files are bounded by concurrency
LARGE_FILES_IN_FLIGHT = 2


class SftpLandingError(RuntimeError):
    """Some files could not be landed; the message lists each file and why."""


@dataclass
class Outcome:
    """What one run did, file by file (returned as the task's XCom, counts only)."""

    landed: list[tuple[FileEntry, LedgerEntry]] = field(default_factory=list)
    identical: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    done_paths: list[Candidate] = field(default_factory=list)  # verified in S3: post-action applies
    bytes: int = 0

    def summary(self) -> dict[str, int]:
        return {"landed": len(self.landed), "identical_skipped": len(self.identical),
                "already_landed": len(self.already), "changed_during_read": len(self.changed),
                "not_complete": len(self.waiting), "failed": len(self.failed), "bytes": self.bytes}


class SftpToS3Operator(LandingOperator):
    """Land the complete files of one SFTP source into ``raw/<source>/<dataset>/<partition>/<name>``.

    A file is taken when complete (settled or marked, see ``s3lander.sftp.rules``) and modified
    before the run's interval end; it streams to S3 (multipart, no local copy) with several
    files in flight over reused connections; its size and SHA-256 are verified (and checked
    against a ``.sha256`` / ``.md5`` sidecar when one is present) before the object is
    committed. The manifest is published, then the ledger advanced, then the post-action
    (archive / delete / leave) applied to verified files only. Files that fail (checksum
    mismatch, unsafe name, transfer error) publish nothing and stay untouched; the task then
    fails listing them, after the good files were published.

    :param source_name: the source in ``include/config/sftp_sources.yaml`` (templated)
    :param source_config: a source given inline instead (a dict of the same keys)
    :param sftp_conn_id: override of the source's connection id
    """

    template_fields: Sequence[str] = ("source", "source_name")
    ui_color = "#d6eaf8"

    def __init__(self, *, source_name: str, source_config: dict[str, Any] | None = None,
                 sftp_conn_id: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("source", source_name)
        super().__init__(**kwargs)
        self.source_name = source_name
        self.source_config = source_config
        self.sftp_conn_id = sftp_conn_id

    # --- configuration and hooks ---------------------------------------------------------
    @cached_property
    def src(self) -> SftpSource:
        from s3lander.sftp.config import SftpSource, load_sources

        if self.source_config is not None:
            return SftpSource.from_dict(self.source_name, dict(self.source_config))
        sources = load_sources()
        if self.source_name not in sources:
            from s3lander.config import ConfigError

            raise ConfigError(f"no SFTP source {self.source_name!r} in sftp_sources.yaml; known: {sorted(sources)}")
        return sources[self.source_name]

    @cached_property
    def sftp(self) -> FastSftpHook:
        from s3lander.hooks.sftp_fast import FastSftpHook

        return FastSftpHook(self.sftp_conn_id or self.src.conn_id)

    # --- the run ---------------------------------------------------------------------------
    def execute(self, context: Context) -> dict[str, int]:
        from s3lander.sensors.sftp_files import skip_unselected

        skip_unselected(context, self.src.name)
        prepare_task_process(mmap_threshold=1 << 20)  # 8 MiB part buffers on mmap: RSS follows the bytes in flight
        # the SFTP connection is looked up here, on this thread: the S3 side then looks up its own
        # on another thread while the SSH sessions open (one lookup at a time on either thread)
        _ = self.sftp.target
        outcome = asyncio.run(self._run(context))
        self.log.info("SFTP source %s: %s", self.src.name, outcome.summary())
        if outcome.failed:
            lines = "\n".join(f"  {p}: {why}" for p, why in sorted(outcome.failed.items()))
            raise SftpLandingError(f"{len(outcome.failed)} file(s) of SFTP source {self.src.name!r} were not landed "
                                   f"(nothing published for them, sources left untouched):\n{lines}")
        return outcome.summary()

    def _open_landing(self, context: Context) -> tuple[IntervalPublisher, Ledger]:
        """The S3 side: client (~0.3 s, mostly botocore loading its models), publisher, ledger."""
        publisher = self.publisher(context, self.src.dataset, chunk_size=CHUNK_SIZE,
                                   upload_concurrency=UPLOADS_PER_FILE)
        return publisher, self._load_ledger(publisher)

    async def _run(self, context: Context) -> Outcome:
        src, out = self.src, Outcome()
        # commits (one PUT per small file) and aborts run in the loop's default executor: size
        # it for ``concurrency`` files at once (asyncio's default is cores + 4 = 6 here)
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(max_workers=src.concurrency + 4, thread_name_prefix="sftp-s3"))
        landing = asyncio.ensure_future(asyncio.to_thread(self._open_landing, context))  # while SSH opens
        try:
            # one bulk session for a large file opens with the pool: ~0.2 s sooner to its first byte
            # than opening it once the listing has found one (an unused one costs one SSH login)
            async with self.sftp.pool(src.connections, bulk_ahead=1) as pool:
                return await self._transfer(pool, landing, out)
        finally:
            await asyncio.gather(landing, return_exceptions=True)  # never leave the thread behind

    async def _transfer(self, pool: SftpPool, landing: Awaitable[tuple[IntervalPublisher, Ledger]],
                        out: Outcome) -> Outcome:
        """List the inbox (while the S3 side may still be opening), land, publish, then apply the
        post-action to the verified files."""
        from s3lander.hooks.sftp_fast import list_files
        from s3lander.sftp.rules import SettleTracker, discover

        src = self.src
        listing = await list_files(pool.primary, src.inbox, recursive=src.recursive)
        # large files get their own SSH sessions: shake hands while the S3 side opens (a large file
        # that turns out not to be ready costs one unused session)
        pool.warm_bulk((f.size for f in listing), at_most=LARGE_FILES_IN_FLIGHT)
        publisher, ledger = await landing
        found = discover(listing, patterns=src.patterns, exclude=src.exclude, markers=src.markers,
                         checksums=src.checksums, tracker=SettleTracker(src.settle_seconds), now=time.time(),
                         not_after=publisher.interval.end.timestamp())
        out.waiting = [f.path for f in found.waiting]
        self.log.info("Inbox %s: %d listed, %d complete, %d not complete yet, %d for a later interval",
                      src.inbox, len(listing), len(found.ready), len(found.waiting), len(found.later))
        for f in found.waiting:
            self.log.info("Not complete yet, left for a later run: %s", f.path)
        previous = await asyncio.to_thread(publisher.begin)
        await self._land(pool, publisher, ledger, found.ready, out)
        manifest = await asyncio.to_thread(self._publish, publisher, ledger, previous, out)
        self.log.info("Published %s (%d files, %d bytes)", publisher.manifest_key, len(manifest.files),
                      manifest.bytes)
        await self._post_actions(pool, publisher, out)
        return out

    async def _land(self, pool: SftpPool, publisher: IntervalPublisher, ledger: Ledger,
                    ready: list[Candidate], out: Outcome) -> None:
        from s3lander.progress import Progress
        from s3lander.sftp.rules import UnsafeNameError, safe_key_name

        src = self.src
        prefix = publisher.prefix
        used = {k.removeprefix(prefix) for k in ledger.used_keys() if k.startswith(prefix)}
        if publisher.previous is not None:
            used |= {k.removeprefix(prefix) for k in publisher.previous.keys}
        todo: list[tuple[Candidate, str]] = []
        for c in ready:
            try:
                name = safe_key_name(c.file.path)
            except UnsafeNameError as e:
                out.failed[c.file.path] = str(e)
                continue
            if ledger.already_landed(c.file.path, c.file.size, c.file.mtime):
                out.already.append(c.file.path)
                out.done_paths.append(c)
                continue
            todo.append((c, name))
        progress = Progress(f"SFTP {src.name}", unit="files", total=len(todo), logger=self.log)
        small = asyncio.Semaphore(src.concurrency)
        large = asyncio.Semaphore(LARGE_FILES_IN_FLIGHT)
        reserved: set[str] = set(used)

        def key_name(path: str, name: str) -> tuple[str, int]:
            from s3lander.sftp.rules import versioned_name

            version = ledger.next_version(path)
            n = 1
            while versioned_name(name, n) in reserved:
                n += 1
            chosen = versioned_name(name, n)
            reserved.add(chosen)
            return chosen, version

        with ThreadPoolExecutor(max_workers=src.concurrency + 2, thread_name_prefix="sftp-consume") as ex:
            async def one(c: Candidate, name: str) -> None:
                big = c.file.size > CHUNK_SIZE
                async with small:
                    if big:
                        await large.acquire()
                    try:
                        await self._land_one(pool, publisher, ledger, c, name, key_name, ex, out)
                    except Exception as e:  # noqa: BLE001 - one file's failure must not stop the others
                        out.failed[c.file.path] = f"{type(e).__name__}: {e}"
                        self.log.warning("Landing %s failed: %s", c.file.path, e)
                    finally:
                        if big:
                            large.release()
                progress.add(1, nbytes=c.file.size)

            await asyncio.gather(*(one(c, n) for c, n in todo))
        progress.done()

    async def _land_one(self, pool: SftpPool, publisher: IntervalPublisher, ledger: Ledger, c: Candidate,
                        name: str, key_name: Any, ex: ThreadPoolExecutor, out: Outcome) -> None:
        import posixpath

        from s3lander.hooks.sftp_fast import read_small
        from s3lander.landing.manifest import FileEntry
        from s3lander.sftp.ledger import LedgerEntry
        from s3lander.sftp.rules import parse_checksum_file

        src, f = self.src, c.file
        sftp = pool.session()
        remote = posixpath.join(src.inbox, f.path)
        expected: tuple[str, str] | None = None
        if c.sidecar is not None:
            algo = c.sidecar.path.rsplit(".", 1)[1]
            raw = await read_small(sftp, posixpath.join(src.inbox, c.sidecar.path))
            expected = (algo, parse_checksum_file(raw, algo, file_name=f.path, sidecar=c.sidecar.path))
        elif src.require_checksum:
            raise ValueError(f"no checksum sidecar ({', '.join('.' + a for a in src.checksums)}) next to {f.path!r}")
        chosen, version = key_name(f.path, name)
        sink = publisher.open_sink(chosen)  # no I/O: the publisher has begun already
        try:
            got = await pool.fetch(remote, sink.write, executor=ex, md5=bool(expected and expected[0] == "md5"),
                                   sha256=False, expected_size=f.size, session=sftp)
            got.sha256 = sink.sha256  # the sink hashed every byte it was given: no second pass
            if got.changed_since(f):
                await asyncio.to_thread(sink.abort)
                out.changed.append(f.path)
                self.log.warning("%s changed while it was read (%d -> %d bytes); left for the next run",
                                 f.path, f.size, got.size_after)
                return
            if expected is not None:
                actual = got.sha256 if expected[0] == "sha256" else got.md5
                if actual != expected[1]:
                    raise ValueError(f"{expected[0]} mismatch for {f.path!r}: sidecar {c.sidecar.path!r} says "
                                     f"{expected[1]}, the file read has {actual}")
            if ledger.is_identical(f.path, got.sha256, got.bytes):
                await asyncio.to_thread(sink.abort)
                out.identical.append(f.path)
                out.done_paths.append(c)
                self.log.info("Skipping %s: identical to the version already landed", f.path)
                return
            stored = await asyncio.to_thread(sink.commit)
        except BaseException:
            await asyncio.to_thread(sink.abort)
            raise
        if stored.sha256 != got.sha256 or stored.bytes != got.bytes:  # what S3 got is what we read
            raise ValueError(f"{f.path!r}: bytes stored in S3 differ from the bytes read")
        entry = LedgerEntry(path=f.path, size=f.size, mtime=f.mtime, sha256=got.sha256, key=stored.key,
                            version=version, interval_start=publisher.interval.start.isoformat(),
                            run_id=publisher.run_id)
        out.landed.append((FileEntry(key=stored.key, bytes=stored.bytes, rows=0, sha256=stored.sha256), entry))
        out.done_paths.append(c)
        out.bytes += stored.bytes

    def _publish(self, publisher: IntervalPublisher, ledger: Ledger, previous: Manifest | None,
                 out: Outcome) -> Manifest:
        """Manifest first (earlier files of the interval kept), then the ledger."""
        from s3lander.sftp.ledger import LedgerEntry

        files = {f.key: f for f in (previous.files if previous else [])}
        entries = {e["key"]: e for e in ((previous.extra or {}).get("sftp_files", []) if previous else [])}
        for fe, le in out.landed:
            files[fe.key] = fe
            entries[le.key] = le.to_dict()
        manifest = publisher.publish(sorted(files.values(), key=lambda f: f.key), fmt="files",
                                     extra={"sftp_source": self.src.name, "sftp_files": list(entries.values())})
        for d in entries.values():
            ledger.add(LedgerEntry(**d))
        ledger.remember(publisher.manifest_key)
        publisher.store.put_bytes(publisher.bucket, self._ledger_key(publisher), ledger.to_json())
        return manifest

    async def _post_actions(self, pool: SftpPool, publisher: IntervalPublisher, out: Outcome) -> None:
        from s3lander.sftp.actions import post_action_for

        action = post_action_for(self.src)
        day = publisher.interval.start.date()
        for c in out.done_paths:
            try:
                for line in await action.apply(pool.primary, [c.file.path, *(x.path for x in c.companions)], day):
                    self.log.debug("%s", line)
            except Exception as e:  # noqa: BLE001 - landed and recorded; the next run retries the action
                self.log.warning("Post-action %s failed for %s (landed; retried next run): %s",
                                 action.name, c.file.path, e)

    # --- ledger ----------------------------------------------------------------------------
    @staticmethod
    def _ledger_key(publisher: IntervalPublisher) -> str:
        from s3lander.sftp.ledger import LEDGER_NAME

        return publisher.location.state_key(LEDGER_NAME)

    def _load_ledger(self, publisher: IntervalPublisher) -> Ledger:
        """The ledger, repaired with the latest manifest in case a run died before writing it."""
        from s3lander.landing.manifest import Manifest
        from s3lander.sftp.ledger import Ledger

        key = self._ledger_key(publisher)
        ledger = Ledger.from_json(publisher.store.get_bytes(publisher.bucket, key), source=f"s3://{publisher.bucket}/{key}")
        candidates = []
        latest = publisher.latest()
        if latest and latest.get("manifest_key"):
            candidates.append(latest["manifest_key"])
        candidates.append(publisher.manifest_key)
        for mkey in candidates:
            raw = publisher.store.get_bytes(publisher.bucket, mkey)
            if raw is not None:
                n = ledger.absorb_manifest(mkey, Manifest.from_json(raw, source=mkey).extra)
                if n:
                    self.log.warning("Ledger repaired from %s: %d landed file(s) were missing", mkey, n)
        return ledger
