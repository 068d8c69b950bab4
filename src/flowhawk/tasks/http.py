"""HTTP tasks: ``Download`` streams a response into execution storage; ``Request`` returns it.

Redirects are followed (release downloads redirect). A status of 400 or more fails the task
unless ``options.allowFailed`` (or ``allowedResponseCodes``) says otherwise. Connection
problems and timeouts fail with the URL and the reason; a password in the URL is never shown.
Cancellation (kill, task timeout) is honoured between chunks; ``options.readTimeout`` bounds
how long one chunk may take to arrive.
"""

from __future__ import annotations

import base64
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar, TypeVar
from urllib.parse import quote, unquote, urlsplit

import httpx

from flowhawk.errors import TaskError, TaskKilled
from flowhawk.tasks.base import Task, TaskContext
from flowhawk.tasks.scripts import as_bool
from flowhawk.util.durations import parse_duration
from flowhawk.util.jdbc import redact_url

CHUNK_SIZE = 1 << 16
DEFAULT_CONNECT_TIMEOUT = 30.0
DEFAULT_READ_TIMEOUT = 300.0
T = TypeVar("T")
METHODS = ("OPTIONS", "GET", "HEAD", "POST", "PUT", "DELETE", "TRACE", "CONNECT", "PATCH")


def _seconds(value: Any, prop: str) -> float:
    if isinstance(value, int | float):
        return float(value)
    try:
        return parse_duration(str(value)).total_seconds()
    except ValueError as exc:
        raise TaskError(f"property `{prop}`: {exc}") from exc


def filename_from(headers: httpx.Headers, url: httpx.URL) -> str:
    """The file name a response suggests: Content-Disposition, else the URL's last segment."""
    disposition = headers.get("content-disposition")
    if disposition:
        message = Message()
        message["content-disposition"] = disposition
        name = message.get_filename()
        if name:
            base = PurePosixPath(name.replace("\\", "/")).name
            if base not in ("", ".", ".."):
                return base
    segment = unquote(PurePosixPath(url.path).name)
    return segment if segment not in ("", ".", "..") else "download"


class _HttpTask(Task):
    uri: str
    method: str = "GET"
    headers: dict[str, Any] | None = None
    body: str | None = None
    contentType: str | None = None
    formData: dict[str, Any] | None = None
    options: dict[str, Any] | None = None
    sslOptions: dict[str, Any] | None = None
    allowFailed: bool | str = False

    def _request_parts(self, ctx: TaskContext) -> tuple[str, str, dict[str, Any]]:
        url = str(ctx.render(self.uri, "uri")).strip()
        split = urlsplit(url)
        if split.password:
            ctx.register_secret(split.password)
        scheme = split.scheme.lower()
        if scheme not in ("http", "https"):
            raise TaskError(f"property `uri`: expected an http(s) URL, got {redact_url(url)!r}")
        method = str(ctx.render(self.method, "method")).upper()
        if method not in METHODS:
            raise TaskError(f"property `method`: unsupported HTTP method {method!r}")
        headers = {str(k): str(v) for k, v in (ctx.render(self.headers, "headers") or {}).items()}
        kwargs: dict[str, Any] = {"headers": headers}
        content_type = ctx.render(self.contentType, "contentType")
        if self.formData is not None:
            kwargs["data"] = ctx.render(self.formData, "formData")
        elif self.body is not None:
            kwargs["content"] = str(ctx.render(self.body, "body")).encode()
            if content_type or not any(k.lower() == "content-type" for k in headers):
                headers["Content-Type"] = str(content_type or "application/json")
        auth = self._auth(ctx)
        if auth:
            headers["Authorization"] = auth
        return url, method, kwargs

    def _auth(self, ctx: TaskContext) -> str | None:
        options = ctx.render(self.options, "options") or {}
        auth = options.get("auth") or {}
        user = auth.get("username") or options.get("basicAuthUser")
        password = auth.get("password") or options.get("basicAuthPassword")
        token = auth.get("token")
        if token:
            ctx.register_secret(str(token))
            return f"Bearer {token}"
        if user is not None:
            if password:
                ctx.register_secret(str(password))
            raw = f"{user}:{password or ''}".encode()
            return "Basic " + base64.b64encode(raw).decode()
        return None

    def _client(self, ctx: TaskContext) -> httpx.Client:
        options = ctx.render(self.options, "options") or {}
        ssl = ctx.render(self.sslOptions, "sslOptions") or {}
        connect = options.get("connectTimeout")
        read = options.get("readTimeout")
        timeout = httpx.Timeout(
            DEFAULT_READ_TIMEOUT if read is None else _seconds(read, "options.readTimeout"),
            connect=DEFAULT_CONNECT_TIMEOUT
            if connect is None
            else _seconds(connect, "options.connectTimeout"),
        )
        follow = as_bool(options.get("followRedirects", True), "options.followRedirects")
        verify = not as_bool(ssl.get("insecureTrustAllCertificates", False), "sslOptions")
        return httpx.Client(timeout=timeout, follow_redirects=follow, verify=verify)

    def _check_status(self, ctx: TaskContext, response: httpx.Response, url: str) -> None:
        options = ctx.render(self.options, "options") or {}
        allowed_codes = [int(c) for c in options.get("allowedResponseCodes") or []]
        if allowed_codes:
            if response.status_code not in allowed_codes:
                raise TaskError(
                    f"HTTP {response.status_code} {response.reason_phrase} from {redact_url(url)} "
                    f"(allowed: {allowed_codes})"
                )
            return
        allow = as_bool(ctx.render(self.allowFailed, "allowFailed"), "allowFailed") or as_bool(
            options.get("allowFailed", False), "options.allowFailed"
        )
        if response.status_code >= 400 and not allow:
            raise TaskError(
                f"HTTP {response.status_code} {response.reason_phrase} from {redact_url(url)}"
            )


def _headers_out(headers: httpx.Headers) -> dict[str, list[str]]:
    """Response headers as Kestra gives them: name as sent → list of values."""
    out: dict[str, list[str]] = {}
    for raw_key, raw_value in headers.raw:
        key = raw_key.decode(headers.encoding)
        out.setdefault(key, []).append(raw_value.decode(headers.encoding))
    return out


@dataclass
class _Fetched:
    path: Path
    uri: str
    code: int
    length: int
    headers: dict[str, list[str]]


def _run_cancellable(ctx: TaskContext, work: Callable[[], T], shown: str) -> T:
    """Run ``work`` in a thread so that a kill returns at once even while a read is stalled.

    The worker notices the cancel itself at its next chunk (or its read timeout) and removes
    its partial file.
    """
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = work()
        except BaseException as exc:
            box["error"] = exc

    worker = threading.Thread(target=target, name=f"http-{ctx.task_id}", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(0.1)
        if worker.is_alive() and ctx.cancel_event.is_set():
            raise TaskKilled(f"request to {shown} killed")
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


def _failure(url: str, exc: httpx.HTTPError) -> TaskError:
    if isinstance(exc, httpx.TimeoutException):
        reason = f"timed out ({type(exc).__name__})"
    else:
        reason = str(exc) or type(exc).__name__
    password = urlsplit(url).password
    if password:
        reason = reason.replace(password, "***").replace(quote(password), "***")
    return TaskError(f"request to {redact_url(url)} failed: {reason}")


class Download(_HttpTask):
    types: ClassVar[tuple[str, ...]] = (
        "io.kestra.plugin.core.http.Download",
        "io.kestra.plugin.fs.http.Download",
    )

    failOnEmptyResponse: bool | str = True
    saveAs: str | None = None

    def run(self, ctx: TaskContext) -> dict[str, Any]:
        url, method, kwargs = self._request_parts(ctx)
        shown = redact_url(url)
        fail_on_empty = as_bool(
            ctx.render(self.failOnEmptyResponse, "failOnEmptyResponse"), "failOnEmptyResponse"
        )
        started = time.monotonic()
        ctx.logger.debug(f"{method} {shown}")
        result = _run_cancellable(ctx, lambda: self._fetch(ctx, url, method, kwargs), shown)
        elapsed = time.monotonic() - started
        if result.length == 0:
            if fail_on_empty:
                result.path.unlink(missing_ok=True)
                raise TaskError(
                    f"empty response from {shown} (set failOnEmptyResponse: false to allow it)"
                )
            ctx.logger.warning(f"empty response from {shown}")
        rate = result.length / elapsed / 1e6 if elapsed > 0 else 0.0
        ctx.logger.info(
            f"downloaded {result.length} bytes from {shown} in {elapsed:.2f}s "
            f"({rate:.1f} MB/s) as {result.uri}"
        )
        return {
            "uri": result.uri,
            "code": result.code,
            "length": result.length,
            "headers": result.headers,
        }

    def _fetch(self, ctx: TaskContext, url: str, method: str, kwargs: dict[str, Any]) -> _Fetched:
        shown = redact_url(url)
        try:
            with self._client(ctx) as client, client.stream(method, url, **kwargs) as response:
                self._check_status(ctx, response, url)
                name = (
                    str(ctx.render(self.saveAs, "saveAs"))
                    if self.saveAs
                    else filename_from(response.headers, response.url)
                )
                path, uri = ctx.new_file_path(name)
                written = 0
                try:
                    with path.open("wb") as out:
                        for chunk in response.iter_bytes(CHUNK_SIZE):
                            if ctx.cancel_event.is_set():
                                raise TaskKilled(
                                    f"download of {shown} killed after {written} bytes"
                                )
                            out.write(chunk)
                            written += len(chunk)
                    self._check_complete(response, written, shown)
                except BaseException:
                    path.unlink(missing_ok=True)
                    raise
                return _Fetched(
                    path, uri, response.status_code, written, _headers_out(response.headers)
                )
        except httpx.HTTPError as exc:
            raise _failure(url, exc) from exc

    @staticmethod
    def _check_complete(response: httpx.Response, written: int, shown: str) -> None:
        declared = response.headers.get("content-length")
        if declared is None or response.headers.get("content-encoding"):
            return
        if re.fullmatch(r"\d+", declared.strip()) and int(declared) != written:
            raise TaskError(f"incomplete download from {shown}: got {written} of {declared} bytes")


class Request(_HttpTask):
    types: ClassVar[tuple[str, ...]] = (
        "io.kestra.plugin.core.http.Request",
        "io.kestra.plugin.fs.http.Request",
    )

    encryptBody: bool | None = None

    def run(self, ctx: TaskContext) -> dict[str, Any]:
        url, method, kwargs = self._request_parts(ctx)
        shown = redact_url(url)
        started = time.monotonic()
        try:
            response = _run_cancellable(ctx, lambda: self._send(ctx, url, method, kwargs), shown)
        except httpx.HTTPError as exc:
            raise _failure(url, exc) from exc
        self._check_status(ctx, response, url)
        ctx.logger.info(
            f"{method} {shown}: HTTP {response.status_code} "
            f"({len(response.content)} bytes in {time.monotonic() - started:.2f}s)"
        )
        return {
            "uri": redact_url(str(response.url)),
            "code": response.status_code,
            "headers": _headers_out(response.headers),
            "body": response.text,
        }

    def _send(
        self, ctx: TaskContext, url: str, method: str, kwargs: dict[str, Any]
    ) -> httpx.Response:
        with self._client(ctx) as client:
            response = client.request(method, url, **kwargs)
            response.read()
            return response
