#!/usr/bin/env python
"""One request type, in process: the WSGI application called in a loop, no server, no wrk.

    .venv/bin/python bench/inproc.py --users 10000 --phase get              # CPU µs per request
    .venv/bin/python bench/inproc.py --users 10000 --phase get --callgrind  # instructions

It reads a database that ``bench/run.py --keep-db`` seeded (``beem_bench_<users>`` and its
samples in ``bench/out/data-<users>``), fetches a real token from ``/o/token/`` and sends
``--requests`` requests of one type straight to Django's WSGI handler (after a warm-up).

Wall-clock figures on a shared VM move by ±30 % between minutes; ``--callgrind`` runs the same
loop under valgrind and counts the CPU instructions of the web side only (Python and the C it
calls, not PostgreSQL), which repeat exactly for the same code and data — the figure to compare
two versions of the code with. In service a web process writes its buffered request-log rows
and run counts once per wall-clock second; here they are written every ``--flush-every``
requests instead (default 200, about one second of one web process's lookups), so every mode
— and valgrind, which runs the loop ~50× slower — counts the same share of those writes per
request whatever the clock says. ``BEEM_REQUEST_LOG=off`` leaves the log out altogether.
``--profile`` prints a cProfile (CPU time) of the loop instead.
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import io
import itertools
import json
import os
import pstats
import re
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PHASES = ("ping", "probe", "username", "externalid", "get", "list", "post")


def environment(db_url: str, redis_url: str) -> dict[str, str]:
    # A broker without a worker: writes queue their apply job as with a real deployment (no
    # eager apply inside the request); the database is emptied at the end.
    return {
        "CELERY_BROKER_URL": redis_url,
        "REDIS_URL": redis_url,
        "DJANGO_SETTINGS_MODULE": "beem_admin.settings",
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": "inproc-" + "x" * 50,
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DJANGO_SECURE_SSL_REDIRECT": "false",
        "DATABASE_URL": db_url,
        "BEEM_PUBLIC_URL": "http://127.0.0.1:8000",
        "BEEM_BENCH_ENDPOINT": "1",
        "BEEM_TOKEN_RATE_LIMIT": "0",
        "BEEM_TOKEN_RATE_LIMIT_PER_ADDRESS": "0",
        # Never due by the clock: the loop writes them every --flush-every requests.
        "BEEM_REQUEST_LOG_FLUSH_SECONDS": str(_NEVER),
        "BEEM_RUN_COUNT_FLUSH_SECONDS": str(_NEVER),
    }


_NEVER = 10**9  # seconds


def flushing(one, every: int):
    """``one`` that also writes the buffered request-log rows and run counts after every
    ``every``-th request (0: never), as the per-second flush of a web process would."""
    from directory_sync import runs
    from directory_sync.scim import request_log

    def call(i: int):
        answer = one(i)
        if every and (i + 1) % every == 0:
            request_log.request_log_flush()
            runs.runs_counts_flush()
        return answer

    return call


class Client:
    def __init__(self, app):
        self.app = app
        self.headers: dict[str, str] = {}

    def call(self, method: str, path: str, *, query: str = "", body: bytes = b"", **headers):
        environ = {
            "REQUEST_METHOD": method,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "HTTP_HOST": "127.0.0.1:8000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "CONTENT_LENGTH": str(len(body)),
            **self.headers,
            **headers,
        }
        answer: dict[str, str] = {}

        def start_response(status, _headers, _exc_info=None):
            answer["status"] = status

        content = b"".join(self.app(environ, start_response))
        return int(answer["status"].split()[0]), content


def requests_of(phase: str, client: Client, base: str, data: Path):
    """A function i -> one request of the phase (the bench's wrk scripts' mix)."""
    ids = (data / "user_ids.txt").read_text().split()
    names = (data / "user_names.txt").read_text().split()
    external = (data / "external_ids.txt").read_text().split()
    # Valid Saudi mobile numbers (prefix 55), distinct within a run; the seed uses prefix 50.
    mobiles = itertools.count(secrets.randbelow(10**7))

    def one(i: int):
        if phase == "ping":
            return client.call("GET", "/scim/bench/ping")
        if phase == "probe":
            value = secrets.token_hex(16)
            return client.call("GET", f"{base}/Users", query=f"filter=userName+eq+%22{value}%22")
        if phase == "username":
            value = names[i % len(names)]
            return client.call("GET", f"{base}/Users", query=f"filter=userName+eq+%22{value}%22")
        if phase == "externalid":
            value = external[i % len(external)]
            return client.call("GET", f"{base}/Users", query=f"filter=externalId+eq+%22{value}%22")
        if phase == "get":
            return client.call("GET", f"{base}/Users/{ids[i % len(ids)]}")
        if phase == "list":
            start = 1 + (i * 100) % max(1, len(ids) - 100)
            return client.call("GET", f"{base}/Users", query=f"startIndex={start}&count=100")
        user = secrets.token_hex(8)
        document = {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": f"{user}@inproc.example.com",
            "externalId": user,
            "active": True,
            "name": {"givenName": "In", "familyName": "Process"},
            "emails": [{"type": "work", "primary": True, "value": f"{user}@inproc.example.com"}],
            "phoneNumbers": [
                {"type": "mobile", "value": f"+96655{next(mobiles) % 10**7:07d}", "primary": True}
            ],
        }
        return client.call("POST", f"{base}/Users", body=json.dumps(document).encode())

    return one


def callgrind(args: argparse.Namespace) -> None:
    """Re-run this loop under valgrind, counting instructions only while it runs."""
    if not shutil.which("valgrind"):
        raise SystemExit("valgrind is not installed (Debian: apt-get install valgrind)")
    out = Path(args.out) / f"callgrind-{args.phase}-{args.users}.out"
    out.parent.mkdir(parents=True, exist_ok=True)
    argv = [a for a in sys.argv[1:] if a != "--callgrind"] + ["--under-callgrind"]
    done = subprocess.run(
        ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"]
        + [sys.executable, __file__, *argv],
        capture_output=True,
        text=True,
    )
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or not found or int(found.group(1)) == 0:
        raise SystemExit(f"callgrind run failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    per_request = int(found.group(1)) / args.requests
    print(
        f"{args.phase}: {per_request / 1e6:.3f} M instructions per request (web side, "
        f"{args.requests} requests; {out})"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, default=10_000, help="the seeded database's size")
    p.add_argument("--phase", choices=PHASES, default="get")
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--rounds", type=int, default=5, help="timed rounds (the best is kept)")
    p.add_argument("--db-name", default=None, help="database name (default beem_bench_<users>)")
    p.add_argument(
        "--pg-url",
        default=os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
    )
    p.add_argument(
        "--redis-url",
        default="redis://127.0.0.1:6379/11",
        help="a Redis database this may empty (writes queue apply jobs there)",
    )
    p.add_argument(
        "--flush-every",
        type=int,
        default=200,
        help="write the buffered request-log rows and run counts every N requests (0: never)",
    )
    p.add_argument("--data", default=None, help="samples (default bench/out/data-<users>)")
    p.add_argument("--out", default=str(ROOT / "bench" / "out"))
    p.add_argument("--callgrind", action="store_true", help="count instructions (valgrind)")
    p.add_argument("--profile", action="store_true", help="print a cProfile of the loop")
    p.add_argument("--under-callgrind", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.callgrind:
        if args.requests == p.get_default("requests"):
            args.requests = 200  # valgrind runs Python about 50 times slower
            sys.argv.append("--requests=200")
        callgrind(args)
        return

    from bench.run import database_url

    db_name = args.db_name or f"beem_bench_{args.users}"
    os.environ.update(environment(database_url(args.pg_url, db_name), args.redis_url))
    import django

    django.setup()
    from django.core.wsgi import get_wsgi_application

    from bench import seed
    from directory_sync import flusher

    # The background flusher thread wakes by the clock; the loop flushes by request count.
    flusher.BACKGROUND_FLUSH = False
    organization, client_id, client_secret = seed.organization_prepare(slug="bench", name="Bench")
    client = Client(get_wsgi_application())
    basic = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()
    status, body = client.call(
        "POST",
        "/o/token/",
        body=b"grant_type=client_credentials",
        CONTENT_TYPE="application/x-www-form-urlencoded",
        HTTP_AUTHORIZATION=f"Basic {basic}",
    )
    if status != 200:
        raise SystemExit(f"/o/token/ answered {status}: {body[:300]!r}")
    client.headers = {
        "HTTP_AUTHORIZATION": "Bearer " + json.loads(body)["access_token"],
        "CONTENT_TYPE": "application/scim+json",
    }
    data = Path(args.data or Path(args.out) / f"data-{args.users}")
    one = flushing(
        requests_of(args.phase, client, f"/scim/v2/{organization}", data), args.flush_every
    )
    try:
        for i in range(args.warmup):
            status, body = one(i)
            if status >= 300:
                raise SystemExit(f"{args.phase} answered {status}: {body[:300]!r}")
        measure(args, one)
    finally:
        import redis

        redis.Redis.from_url(args.redis_url).flushdb()


def measure(args: argparse.Namespace, one) -> None:
    if args.under_callgrind:
        subprocess.run(["callgrind_control", "-i", "on", str(os.getpid())], check=True)
        for i in range(args.requests):
            one(i)
        subprocess.run(["callgrind_control", "-i", "off", str(os.getpid())], check=True)
        return
    if args.profile:
        profile = cProfile.Profile(time.process_time)
        profile.enable()
        for i in range(args.requests):
            one(i)
        profile.disable()
        pstats.Stats(profile).sort_stats("cumulative").print_stats(50)
        return
    rounds = []
    for _ in range(args.rounds):
        cpu, wall = time.process_time(), time.perf_counter()
        for i in range(args.requests):
            one(i)
        rounds.append(
            (
                (time.process_time() - cpu) / args.requests * 1e6,
                (time.perf_counter() - wall) / args.requests * 1e6,
            )
        )
    cpu, wall = min(rounds)
    print(
        f"{args.phase}: {cpu:.0f} µs CPU, {wall:.0f} µs wall per request (best of "
        f"{args.rounds} rounds of {args.requests}; the database's CPU is not in it)"
    )


if __name__ == "__main__":
    main()
