"""The ASGI application (``create_app``) and the in-process uvicorn server (``serve``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flowhawk import __version__
from flowhawk.engine.service import Engine, NotFound
from flowhawk.errors import DatabaseError, FlowhawkError
from flowhawk.flow.loader import FlowValidationError
from flowhawk.server.auth import AccessMiddleware
from flowhawk.server.live import LiveHub
from flowhawk.store.files import StorageError

log = logging.getLogger("flowhawk.server")

HERE = Path(__file__).parent


class ServerTiming:
    """Adds ``Server-Timing: app;dur=<ms>`` (time to the response headers) to every answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def timed(message: Message) -> None:
            if message["type"] == "http.response.start":
                elapsed = (time.perf_counter() - started) * 1000
                headers = list(message.get("headers", []))
                headers.append((b"server-timing", f"app;dur={elapsed:.2f}".encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, timed)


def _error(status: int, detail: Any) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


def _install_error_handlers(app: FastAPI) -> None:
    async def flow_invalid(request: Request, exc: Exception) -> JSONResponse:
        from flowhawk.server.api import problems_json

        assert isinstance(exc, FlowValidationError)
        return _error(422, problems_json(exc.problems))

    async def not_found(request: Request, exc: Exception) -> JSONResponse:
        return _error(404, str(exc))

    async def database(request: Request, exc: Exception) -> JSONResponse:
        return _error(503, str(exc))

    async def flowhawk_error(request: Request, exc: Exception) -> JSONResponse:
        message = str(exc)
        if message.endswith(" not found") or " not found " in message:
            return _error(404, message)
        return _error(422, message)

    async def bad_value(request: Request, exc: Exception) -> JSONResponse:
        """Values PostgreSQL cannot store (NUL characters, lone surrogates, out-of-range)."""
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return _error(422, f"invalid value: {text}")

    app.add_exception_handler(FlowValidationError, flow_invalid)
    app.add_exception_handler(NotFound, not_found)
    app.add_exception_handler(StorageError, not_found)
    app.add_exception_handler(DatabaseError, database)
    app.add_exception_handler(FlowhawkError, flowhawk_error)
    app.add_exception_handler(psycopg.DataError, bad_value)
    app.add_exception_handler(UnicodeError, bad_value)


def create_app(engine: Engine) -> FastAPI:
    """The API and UI over one engine; credentials come from ``engine.settings``."""
    hub = LiveHub(engine.repo.url)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        hub.start(asyncio.get_running_loop())
        try:
            yield
        finally:
            hub.stop()

    app = FastAPI(
        title="flowhawk",
        version=__version__,
        description="Run, watch and backfill Kestra-dialect flows on PostgreSQL.",
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.engine = engine
    app.state.hub = hub
    _install_error_handlers(app)

    from flowhawk.server import api, ui

    app.include_router(api.router)
    app.include_router(ui.router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    settings = engine.settings
    app.add_middleware(
        AccessMiddleware, username=settings.server_username, password=settings.server_password
    )
    app.add_middleware(ServerTiming)
    return app


class _Server(uvicorn.Server):
    """uvicorn that stops on our ``stop_event`` and leaves signal handling to ``serve``."""

    def __init__(self, config: uvicorn.Config, stop_event: threading.Event, hub: LiveHub) -> None:
        super().__init__(config)
        self.stop_event = stop_event
        self.hub = hub

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, frame: Any) -> None:
            self.stop_event.set()

        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)

    async def main_loop(self) -> None:
        watcher = asyncio.create_task(self._watch())
        try:
            await super().main_loop()
        finally:
            watcher.cancel()

    async def _watch(self) -> None:
        while not self.should_exit:
            if self.stop_event.is_set():
                self.should_exit = True
                self.hub.stop()  # ends open log streams so shutdown is not held up
                return
            await asyncio.sleep(0.1)


def _server(engine: Engine, host: str, port: int, stop: threading.Event) -> _Server:
    app = create_app(engine)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=3,
        lifespan="on",
    )
    return _Server(config, stop, app.state.hub)


def _run(server: _Server, host: str, port: int) -> None:
    try:
        asyncio.run(server.serve())
    finally:
        server.stop_event.set()
        server.hub.stop()
    if not server.started:
        raise FlowhawkError(f"could not listen on {host}:{port} (is the port in use?)")


def serve(
    engine: Engine,
    host: str = "127.0.0.1",
    port: int = 8080,
    stop_event: threading.Event | None = None,
) -> None:
    """Serve the API and UI until SIGTERM/SIGINT (main thread) or ``stop_event`` is set."""
    stop = stop_event or threading.Event()
    _run(_server(engine, host, port, stop), host, port)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class ServerThread:
    """``serve`` in a background thread (tests, benchmarks): ``url`` once it listens."""

    def __init__(self, engine: Engine, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.url = f"http://{host}:{self.port}"
        self.stop_event = threading.Event()
        self.error: BaseException | None = None
        self.server = _server(engine, host, self.port, self.stop_event)
        self._thread = threading.Thread(target=self._run, name="flowhawk-http", daemon=True)

    def _run(self) -> None:
        try:
            _run(self.server, self.host, self.port)
        except BaseException as exc:  # reported by start()
            self.error = exc

    def start(self, timeout: float = 15.0) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.error is not None or not self._thread.is_alive():
                raise FlowhawkError(f"the server did not start: {self.error}")
            if self.server.started:
                return self
            time.sleep(0.05)
        raise FlowhawkError(f"the server did not listen on {self.url} within {timeout} s")

    def stop(self, timeout: float = 10.0) -> None:
        self.stop_event.set()
        self._thread.join(timeout)
