"""HTTP Download and Request against a real local HTTP server."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request as WRequest
from werkzeug import Response

from flowhawk.errors import TaskError, TaskKilled
from flowhawk.tasks.http import Download, Request


def download(**props: Any) -> Download:
    return Download.model_validate(
        {"id": "dl", "type": "io.kestra.plugin.core.http.Download", **props}
    )


def stored(ctx: Any, uri: str) -> bytes:
    with ctx.open_file(uri) as handle:
        return handle.read()


def test_download_200(make_ctx, httpserver: HTTPServer):
    httpserver.expect_request("/data/trips.csv", headers={"X-Token": "abc"}).respond_with_data(
        "a,b\n1,2\n", content_type="text/csv"
    )
    ctx = make_ctx({"token": "abc"})
    out = download(
        uri=httpserver.url_for("/data/trips.csv"), headers={"X-Token": "{{ token }}"}
    ).run(ctx)
    assert out["code"] == 200
    assert out["length"] == 8
    assert out["uri"].startswith("kestra:///") and out["uri"].endswith("/trips.csv")
    assert stored(ctx, out["uri"]) == b"a,b\n1,2\n"
    assert out["headers"]["Content-Type"] == ["text/csv"]
    assert any(lvl == "INFO" and "downloaded 8 bytes" in m for lvl, m in ctx.logs)


def test_download_name_from_content_disposition(make_ctx, httpserver: HTTPServer):
    httpserver.expect_request("/get").respond_with_data(
        "x", headers={"Content-Disposition": 'attachment; filename="report 2024.csv"'}
    )
    ctx = make_ctx()
    out = download(uri=httpserver.url_for("/get?id=1")).run(ctx)
    assert out["uri"].endswith("/report 2024.csv")


def test_download_large_body_is_streamed(make_ctx, httpserver: HTTPServer):
    chunk = bytes(range(256)) * 4096  # 1 MiB
    count = 30
    expected = hashlib.sha256(chunk * count).hexdigest()

    def handler(request: WRequest) -> Response:
        return Response(
            (chunk for _ in range(count)),
            headers={"Content-Length": str(len(chunk) * count)},
            content_type="application/octet-stream",
        )

    httpserver.expect_request("/big.bin").respond_with_handler(handler)
    ctx = make_ctx()
    out = download(uri=httpserver.url_for("/big.bin")).run(ctx)
    assert out["length"] == len(chunk) * count
    path = ctx.file_path(out["uri"])
    assert path.stat().st_size == len(chunk) * count
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    assert digest.hexdigest() == expected


def test_404_is_a_clear_error_without_the_password(make_ctx, httpserver: HTTPServer):
    httpserver.expect_request("/missing.csv").respond_with_data("nope", status=404)
    url = httpserver.url_for("/missing.csv").replace("http://", "http://user:s3cr3t@")
    ctx = make_ctx()
    with pytest.raises(TaskError) as info:
        download(uri=url).run(ctx)
    message = str(info.value)
    assert "HTTP 404 NOT FOUND" in message
    assert "/missing.csv" in message and "user:***@" in message
    assert "s3cr3t" not in message


def test_allow_failed_keeps_the_body(make_ctx, httpserver: HTTPServer):
    httpserver.expect_request("/gone").respond_with_data("gone", status=410)
    ctx = make_ctx()
    out = download(uri=httpserver.url_for("/gone"), options={"allowFailed": True}).run(ctx)
    assert out["code"] == 410 and stored(ctx, out["uri"]) == b"gone"


def test_redirect_is_followed(make_ctx, httpserver: HTTPServer):
    httpserver.expect_request("/releases/download/v1/f.csv.gz").respond_with_response(
        Response(status=302, headers={"Location": httpserver.url_for("/objects/abc/f.csv.gz")})
    )
    httpserver.expect_request("/objects/abc/f.csv.gz").respond_with_data(b"\x1f\x8bpayload")
    ctx = make_ctx()
    out = download(uri=httpserver.url_for("/releases/download/v1/f.csv.gz")).run(ctx)
    assert out["code"] == 200
    assert stored(ctx, out["uri"]) == b"\x1f\x8bpayload"
    assert out["uri"].endswith("/f.csv.gz")


def test_empty_response_fails_unless_allowed(make_ctx, httpserver: HTTPServer):
    httpserver.expect_request("/empty").respond_with_data("")
    with pytest.raises(TaskError, match="empty response from .*/empty"):
        download(uri=httpserver.url_for("/empty")).run(make_ctx())
    ctx = make_ctx()
    out = download(uri=httpserver.url_for("/empty"), failOnEmptyResponse=False).run(ctx)
    assert out["length"] == 0
    assert any(lvl == "WARN" and "empty response" in m for lvl, m in ctx.logs)


@pytest.fixture
def stalling_server() -> Iterator[str]:
    """Accepts connections, reads the request, and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    conns: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.recv(65536)
            conns.append(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/slow.csv"
    stop.set()
    thread.join(2)
    for conn in conns:
        conn.close()
    server.close()


def test_read_timeout_is_a_clear_error(make_ctx, stalling_server: str):
    ctx = make_ctx()
    started = time.monotonic()
    with pytest.raises(
        TaskError, match=r"request to http://127\.0\.0\.1:\d+/slow\.csv failed: timed out"
    ):
        download(uri=stalling_server, options={"readTimeout": "PT0.5S"}).run(ctx)
    assert time.monotonic() - started < 5


def test_kill_while_stalled_returns_at_once(make_ctx, stalling_server: str):
    ctx = make_ctx()
    threading.Timer(0.3, ctx.cancel_event.set).start()
    started = time.monotonic()
    with pytest.raises(TaskKilled):
        download(uri=stalling_server, options={"readTimeout": "PT2S"}).run(ctx)
    assert time.monotonic() - started < 1.5


def test_connection_refused_is_a_clear_error(make_ctx):
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    with pytest.raises(TaskError, match=rf"request to http://127\.0\.0\.1:{port}/x failed: "):
        download(uri=f"http://127.0.0.1:{port}/x").run(make_ctx())


def test_cancel_while_downloading_stops_and_removes_the_partial_file(
    make_ctx, httpserver: HTTPServer
):
    sent = threading.Event()

    def handler(request: WRequest) -> Response:
        def body() -> Iterator[bytes]:
            for _ in range(100):
                yield b"x" * 65536
                sent.set()
                time.sleep(0.05)

        return Response(body(), headers={"Content-Length": str(100 * 65536)})

    httpserver.expect_request("/slow.bin").respond_with_handler(handler)
    ctx = make_ctx()
    threading.Thread(target=lambda: sent.wait(5) and ctx.cancel_event.set(), daemon=True).start()
    started = time.monotonic()
    with pytest.raises(TaskKilled):
        download(uri=httpserver.url_for("/slow.bin")).run(ctx)
    assert time.monotonic() - started < 2
    storage_files = ctx.storage.list_prefix(ctx.storage_prefix)
    deadline = time.monotonic() + 2
    while storage_files and time.monotonic() < deadline:
        time.sleep(0.05)
        storage_files = ctx.storage.list_prefix(ctx.storage_prefix)
    assert storage_files == []


def test_non_http_uri_is_refused(make_ctx):
    with pytest.raises(TaskError, match="expected an http"):
        download(uri="file:///etc/passwd").run(make_ctx())


def test_old_type_name_is_an_alias():
    assert "io.kestra.plugin.fs.http.Download" in Download.types


def test_request_posts_json_and_returns_the_body(make_ctx, httpserver: HTTPServer):
    def handler(request: WRequest) -> Response:
        payload = json.loads(request.get_data())
        return Response(
            json.dumps({"echo": payload, "ctype": request.content_type}),
            content_type="application/json",
            headers={"X-Id": "7"},
        )

    httpserver.expect_request("/api", method="POST").respond_with_handler(handler)
    ctx = make_ctx({"n": 5})
    task = Request.model_validate(
        {
            "id": "req",
            "type": "io.kestra.plugin.core.http.Request",
            "uri": httpserver.url_for("/api"),
            "method": "POST",
            "body": '{"n": {{ n }}}',
        }
    )
    out = task.run(ctx)
    assert out["code"] == 200
    assert json.loads(out["body"]) == {"echo": {"n": 5}, "ctype": "application/json"}
    assert out["headers"]["X-Id"] == ["7"]


def test_request_error_status_fails(make_ctx, httpserver: HTTPServer):
    httpserver.expect_request("/api").respond_with_data("boom", status=500)
    task = Request.model_validate(
        {
            "id": "req",
            "type": "io.kestra.plugin.core.http.Request",
            "uri": httpserver.url_for("/api"),
        }
    )
    with pytest.raises(TaskError, match="HTTP 500 INTERNAL SERVER ERROR from http://"):
        task.run(make_ctx())


def test_request_basic_auth_from_options(make_ctx, httpserver: HTTPServer):
    httpserver.expect_request(
        "/private", headers={"Authorization": "Basic dTpwdw=="}
    ).respond_with_data("ok")
    task = Request.model_validate(
        {
            "id": "req",
            "type": "io.kestra.plugin.core.http.Request",
            "uri": httpserver.url_for("/private"),
            "options": {"auth": {"type": "BASIC", "username": "u", "password": "pw"}},
        }
    )
    assert task.run(make_ctx())["body"] == "ok"
