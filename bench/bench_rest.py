"""``make bench B=rest``: paginated REST API -> S3 on loopback, ours against the limit and HttpOperator.

One run starts SeaweedFS and a demo API serving a large catalogue (10 albums per page), then
runs each subject as its own process over the same pages:

* ``limit``: a bare ``requests.Session`` loop (``trust_env=False``) following ``albums.next`` and
  parsing each page with orjson (to find the records and the next page, as any client must)
* ``HttpOperator+pagination_function``: Airflow's http provider, the documented way to paginate
* ``ours``: ``RestApiToS3Operator`` fetching, writing JSON Lines gzip parts and publishing to S3

at 1,000 and 10,000 pages (pages/s from the timed loop; peak RSS of the process; memory must
stay flat in the number of pages). Then with a server-side limit of R requests/s: ours with a
client budget of R/s (sustained rate / R, 429s provoked) next to the bare loop that only
honours Retry-After. The machine is shared: figures are noisy, compare within one run.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import Recorder, report_peak, run_measured

PAGE = 10
SIZES = (1_000, 10_000)
RATE = 50  # requests per second allowed by the server in the rate-limited run (well under every subject's max)
RATE_PAGES = 600


# --- subjects (each runs in its own process: python -m bench.bench_rest <subject> <pages> <base_url>) ---------
CATALOGUE = {"start": "2023-01-01T00:00:00+00:00", "end": "2025-01-01T00:00:00+00:00"}


def _before(pages: int) -> str:
    """``updated_before`` selecting exactly the first ``pages`` pages of the bench catalogue."""
    from include.demo_api.catalogue import Catalogue

    cat = Catalogue(albums=max(SIZES) * PAGE + PAGE, **CATALOGUE)
    return cat.updated_at(pages * PAGE).isoformat().replace("+00:00", "Z")


def _first_url(base: str, pages: int) -> str:
    return f"{base}/v1/browse/new-releases?offset=0&limit={PAGE}&updated_before={_before(pages)}"


def _token(base: str, cid: str, secret: str) -> str:
    import requests

    r = requests.post(f"{base}/api/token", data={"grant_type": "client_credentials", "client_id": cid,
                                                  "client_secret": secret}, timeout=10)
    r.raise_for_status()
    return r.json()["access_token"]


def subject_bare(pages: int, base: str, cid: str, secret: str) -> None:
    import requests

    try:  # the fastest parser at hand: the limit parses each page, as any client must, but no slower than us
        from orjson import loads
    except ImportError:
        from json import loads

    s = requests.Session()
    s.trust_env = False  # as our hook: proxy/CA/netrc settings resolved once, not re-read per request
    s.headers["Authorization"] = "Bearer " + _token(base, cid, secret)
    url: str | None = _first_url(base, pages)
    n = rows = throttled = 0
    t0, c0 = time.perf_counter(), time.process_time()
    while url and n < pages:
        r = s.get(url, timeout=30)
        if r.status_code == 429:  # honour Retry-After, as the simplest polite client would
            throttled += 1
            time.sleep(float(r.headers.get("Retry-After", "1")))
            continue
        r.raise_for_status()
        body = loads(r.content)["albums"]
        rows += len(body["items"])
        url = body["next"]
        n += 1
    print(f"ELAPSED_S={time.perf_counter() - t0}\nLOOP_CPU_S={time.process_time() - c0}\nPAGES={n}\nROWS={rows}\n"
          f"THROTTLED={throttled}")


def subject_httpop(pages: int, base: str, cid: str, secret: str) -> None:
    from urllib.parse import urlsplit

    from airflow.providers.http.operators.http import HttpOperator

    count = {"n": 1}

    def next_page(response: Any) -> dict[str, Any] | None:
        nxt = response.json()["albums"]["next"]
        if not nxt or count["n"] >= pages:
            return None
        count["n"] += 1
        u = urlsplit(nxt)
        return {"endpoint": f"{u.path}?{u.query}", "data": {}}

    # a connection without login/password: HttpHook would turn those into Basic auth over our Bearer header
    op = HttpOperator(task_id="http", http_conn_id="demo_api_plain", method="GET",
                      endpoint=_first_url("", pages),
                      headers={"Authorization": "Bearer " + _token(base, cid, secret)},
                      pagination_function=next_page)
    t0, c0 = time.perf_counter(), time.process_time()
    texts = op.execute({})
    print(f"ELAPSED_S={time.perf_counter() - t0}\nLOOP_CPU_S={time.process_time() - c0}\nPAGES={len(texts)}\n"
          "THROTTLED=0")


def subject_ours(pages: int, base: str, cid: str, secret: str, rate: int = 0) -> None:
    from datetime import datetime, timezone

    from s3lander.config import load_yaml
    from s3lander.operators.rest_api_to_s3 import RestApiToS3Operator
    from s3lander.rest.config import CONFIG_FILE, build_endpoint

    doc = load_yaml(CONFIG_FILE)
    cfg = build_endpoint("bench", {
        "source": "spotify", "path": "/v1/browse/new-releases", "records": "albums.items",
        "paginator": {"type": "offset", "limit": PAGE, "total_path": "albums.total", "max_pages": pages},
        "rate_limit": {"requests": rate, "per_seconds": 1} if rate else None, "dataset": f"bench_{pages}_{rate}",
        "pages_per_part": 1000, "params": {"updated_before": _before(pages)}},
        sources=doc["sources"], defaults=doc.get("defaults"))
    from s3lander.rest.client import RestClient

    # time the page loop (first request .. last page landed), as the other subjects' loops are timed;
    # the whole execute() (S3 client set-up, final publish) is reported as EXECUTE_S
    marks: dict[str, float] = {}
    pages_of = RestClient.pages

    def timed_pages(self: Any, *args: Any, **kwargs: Any) -> Any:
        marks["t0"], marks["c0"] = time.perf_counter(), time.process_time()
        yield from pages_of(self, *args, **kwargs)
        marks["t1"], marks["c1"] = time.perf_counter(), time.process_time()

    RestClient.pages = timed_pages  # type: ignore[method-assign]
    op = RestApiToS3Operator(task_id="land", endpoint="bench")
    op.config = cfg
    ctx = {"run_id": "bench", "params": {}, "data_interval_start": datetime(2024, 1, 1, tzinfo=timezone.utc),
           "data_interval_end": datetime(2024, 1, 2, tzinfo=timezone.utc)}
    t0 = time.perf_counter()
    out = op.execute(ctx)
    print(f"ELAPSED_S={marks['t1'] - marks['t0']}\nLOOP_CPU_S={marks['c1'] - marks['c0']}\n"
          f"EXECUTE_S={time.perf_counter() - t0}\nPAGES={pages}\n"
          f"ROWS={out['rows']}\nTHROTTLED=0")


def _figures(out: str) -> dict[str, float]:
    wanted = ("ELAPSED_S", "LOOP_CPU_S", "EXECUTE_S", "PAGES", "ROWS", "THROTTLED", "CPU_S")
    return {k: float(v) for k, v in (line.split("=", 1) for line in out.splitlines() if "=" in line)
            if k in wanted}


# --- the benchmark ----------------------------------------------------------------------------------------
def _start_api(state: Path, albums: int) -> tuple[Any, str, str, str]:
    import subprocess

    from include.stack.base import HOST, REPO_ROOT, free_port, new_secret, wait_until

    port, cid, secret = free_port(), "bench", new_secret()
    cfg = state / "api.json"
    cfg.write_text(json.dumps({"albums": albums, "client_id": cid, "client_secret": secret, "max_limit": 50,
                               **CATALOGUE}))
    log = open(state / "api.log", "wb")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen([sys.executable, "-m", "include.demo_api", "--port", str(port), "--config", str(cfg)],
                            stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT, start_new_session=True,
                            env={**os.environ, "PYTHONPATH": f"{REPO_ROOT}:{REPO_ROOT / 'plugins'}"})
    base = f"http://{HOST}:{port}"
    import urllib.request

    wait_until(lambda: urllib.request.urlopen(base + "/health", timeout=1).status == 200,  # noqa: S310
               what="demo api", timeout=30, proc=proc)
    return proc, base, cid, secret


def _admin(base: str, secret: str, action: str, body: dict | None = None) -> dict:
    import urllib.request

    req = urllib.request.Request(f"{base}/admin/{action}", data=json.dumps(body or {}).encode(), method="POST",  # noqa: S310
                                 headers={"X-Admin-Key": secret, "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310 - loopback only
        return json.loads(r.read())


def main() -> None:
    from include.stack.base import HOST, stop_pid
    from include.stack.cli import Stack

    rec = Recorder("rest")
    tmp = Path(tempfile.mkdtemp(prefix="bench-rest-"))
    stack = Stack(tmp)
    proc = None
    try:
        stack.up(["s3"])
        proc, base, cid, secret = _start_api(tmp, albums=max(SIZES) * PAGE + PAGE)
        port = int(base.rsplit(":", 1)[1])
        env = {**stack.environment(), "PYTHONPATH": f"{Path.cwd()}:{Path.cwd() / 'plugins'}",
               "AIRFLOW_CONN_SPOTIFY_API": json.dumps({"conn_type": "http", "host": HOST, "port": port,
                                                       "schema": "http", "login": cid, "password": secret}),
               "AIRFLOW_CONN_DEMO_API_PLAIN": json.dumps({"conn_type": "http", "host": HOST, "port": port,
                                                          "schema": "http"}),
               "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING", "AIRFLOW_HOME": str(tmp / "airflow")}
        subjects = [("limit", "bare"), ("HttpOperator+pagination_function", "httpop"), ("ours", "ours")]
        for pages in SIZES:
            size = f"{pages} pages x {PAGE}"
            for name, sub in subjects:
                m = run_measured([sys.executable, "-m", "bench.bench_rest", sub, str(pages), base, cid, secret],
                                 env=env)
                f = _figures(m.stdout)
                assert int(f["PAGES"]) == pages, f"{name} fetched {f['PAGES']} pages, not {pages}"
                rec.record(name, "pages_per_s", pages / f["ELAPSED_S"], size)
                rec.record(name, "loop_s", f["ELAPSED_S"], size)
                rec.record(name, "cpu_s", f["CPU_S"], size)
                rec.record(name, "loop_cpu_ms_per_page", 1000 * f["LOOP_CPU_S"] / pages, size)
                if "EXECUTE_S" in f:
                    rec.record(name, "execute_s", f["EXECUTE_S"], size)
                rec.record_run(name, m, size)

        # rate-limited: the server allows RATE requests per rolling second per token
        _admin(base, secret, "config", {"rate_limit": RATE, "rate_window": 1.0})
        size = f"{RATE_PAGES} pages, server limit {RATE}/s"
        for name, argv in [("ours", ["ours", str(RATE_PAGES), base, cid, secret, str(RATE)]),
                           ("bare loop honouring Retry-After", ["bare", str(RATE_PAGES), base, cid, secret])]:
            before = _admin(base, secret, "stats")["stats"]["rate_limited"]
            m = run_measured([sys.executable, "-m", "bench.bench_rest", *argv], env=env)
            f = _figures(m.stdout)
            served_429 = _admin(base, secret, "stats")["stats"]["rate_limited"] - before
            rate = RATE_PAGES / f["ELAPSED_S"]
            rec.record(name, "pages_per_s", rate, size)
            rec.record(name, "fraction_of_R", rate / RATE, size)
            rec.record(name, "http_429", served_429, size)
            rec.record(name, "peak_rss_mb", m.peak_rss_mb, size)
        rec.table()
    finally:
        if proc is not None:
            stop_pid(proc.pid)
        stack.down()


def _subject(argv: list[str]) -> None:
    import resource

    sub, pages, base, cid, secret, *rest = argv
    {"bare": subject_bare, "httpop": subject_httpop, "ours": subject_ours}[sub](
        int(pages), base, cid, secret, *[int(x) for x in rest])
    ru = resource.getrusage(resource.RUSAGE_SELF)
    print(f"CPU_S={ru.ru_utime + ru.ru_stime}")  # whole process, imports included
    report_peak()


if __name__ == "__main__":
    _subject(sys.argv[1:])
