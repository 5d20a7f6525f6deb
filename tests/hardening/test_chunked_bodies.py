"""Chunked request bodies (Transfer-Encoding: chunked, no Content-Length) are read within
BEEM_MAX_BODY_BYTES, or refused with a clear SCIM error: never taken for an empty body.

Django's test client always sends a Content-Length, so these tests send raw HTTP to real servers:
gunicorn (production; it decodes the chunks and says so with ``wsgi.input_terminated``) and
Django's own development server (``live_server``; it passes no chunked body on: 411).
"""

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.db import connection

from directory_sync.models import DirectoryRecord

from .conftest import ERROR_SCHEMA, SCIM_CONTENT_TYPE, scim_user

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 4096


def chunked_request(path: str, token: str, body: bytes, *, framing: bytes | None = None) -> bytes:
    """A POST whose body is chunked (100-byte chunks), without Content-Length."""
    if framing is None:
        pieces = [body[i : i + 100] for i in range(0, len(body), 100)]
        framing = b"".join(b"%X\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: {SCIM_CONTENT_TYPE}\r\nTransfer-Encoding: chunked\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + framing


def exchange(host: str, port: int, request: bytes) -> tuple[int, str, bytes]:
    """Send ``request`` in one write (a server answering before it read all of a body must
    not meet a client still sending it) and read the answer."""
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(request)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, response.getheader("Content-Type"), response.read()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def gunicorn(transactional_db):
    """gunicorn serving beem_admin.wsgi on the test database (PostgreSQL: a SQLite test
    database lives in this process's memory)."""
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: set DATABASE_URL=postgres://...")
    db = connection.settings_dict
    port = _free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("CELERY_BROKER_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE")
    }
    env.update(
        DATABASE_URL=f"postgres://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}",
        BEEM_MAX_BODY_BYTES=str(LIMIT),
        BEEM_REQUEST_LOG_FLUSH_SECONDS="0",
    )
    process = subprocess.Popen(
        [Path(sys.executable).with_name("gunicorn"), "beem_admin.wsgi", "-w", "1"]
        + ["-b", f"127.0.0.1:{port}", "--log-level", "warning"],
        cwd=ROOT,
        env=env,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("gunicorn did not start") from None
                time.sleep(0.2)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.postgres
def test_gunicorn_a_chunked_scim_body_within_the_limit_is_read(tenant_factory, gunicorn):
    tenant = tenant_factory(slug="acme-chunked", name="Acme")
    body = json.dumps(scim_user("sara@acme.com")).encode()

    status, content_type, raw = exchange(
        "127.0.0.1", gunicorn, chunked_request(tenant.base + "/Users", tenant.token, body)
    )

    assert (status, content_type) == (201, SCIM_CONTENT_TYPE), raw
    assert json.loads(raw)["userName"] == "sara@acme.com"
    assert DirectoryRecord.objects.get().user_name == "sara@acme.com"


@pytest.mark.postgres
def test_gunicorn_a_chunked_scim_body_over_the_limit_is_a_scim_413(tenant_factory, gunicorn):
    tenant = tenant_factory(slug="acme-chunked-big", name="Acme")
    body = json.dumps(scim_user("big@acme.com", displayName="x" * LIMIT)).encode()

    status, content_type, raw = exchange(
        "127.0.0.1", gunicorn, chunked_request(tenant.base + "/Users", tenant.token, body)
    )

    assert (status, content_type) == (413, SCIM_CONTENT_TYPE), raw
    assert json.loads(raw) == {
        "schemas": [ERROR_SCHEMA],
        "status": "413",
        "detail": f"The request body is larger than the {LIMIT} bytes this server accepts. "
        "Send smaller requests (a SCIM resource is a few kilobytes).",
    }
    assert not DirectoryRecord.objects.exists()


@pytest.mark.postgres
def test_gunicorn_malformed_chunk_framing_is_a_scim_400(tenant_factory, gunicorn):
    tenant = tenant_factory(slug="acme-chunked-bad", name="Acme")
    # A chunk size that is not hexadecimal.
    framing = b'5\r\n{"a":\r\nzz\r\n1}\r\n0\r\n\r\n'

    status, content_type, raw = exchange(
        "127.0.0.1",
        gunicorn,
        chunked_request(tenant.base + "/Users", tenant.token, b"", framing=framing),
    )

    assert (status, content_type) == (400, SCIM_CONTENT_TYPE), raw
    assert json.loads(raw)["detail"] == "The chunked request body is malformed or incomplete."


def test_a_server_that_passes_no_chunked_body_gets_a_scim_411(tenant_factory, live_server):
    tenant = tenant_factory(slug="acme-runserver", name="Acme")
    url = urlsplit(live_server.url)
    body = json.dumps(scim_user("sara@acme.com")).encode()

    status, content_type, raw = exchange(
        url.hostname, url.port, chunked_request(tenant.base + "/Users", tenant.token, body)
    )

    assert (status, content_type) == (411, SCIM_CONTENT_TYPE), raw
    assert json.loads(raw) == {
        "schemas": [ERROR_SCHEMA],
        "status": "411",
        "detail": "This server needs the length of the request body: send it with a "
        "Content-Length header instead of chunked transfer encoding.",
    }
    assert not DirectoryRecord.objects.exists()
