"""Access control: HTTP basic auth when credentials are configured, CSRF checks for browsers.

Basic auth guards every path (static files included) once ``server.username`` and
``server.password`` are set; without them the server only listens on loopback (the CLI refuses
anything else), so no login is asked.

CSRF uses a double-submit cookie: every page sets ``flowhawk_csrf`` (random, SameSite=Strict)
and forms echo it in a hidden ``csrf_token`` field, scripts in the ``X-CSRF-Token`` header. A
state-changing request passes when one of these holds:

* its token matches the cookie;
* its ``Content-Type`` is one a cross-site page cannot send without a CORS preflight (the JSON
  and YAML bodies of the API; no CORS is ever granted);
* it comes from no browser at all: neither ``Origin`` nor ``Sec-Fetch-Site`` (curl, scripts).
  Browsers send ``Origin`` with every form POST and ``Sec-Fetch-Site`` with every request, so
  a forged form or ``no-cors`` fetch is always checked.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from urllib.parse import parse_qs

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSRF_COOKIE = "flowhawk_csrf"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
#: the content types a cross-site form or a no-cors fetch may send without a preflight
SIMPLE_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data", "text/plain"})


def new_token() -> str:
    return secrets.token_urlsafe(32)


def check_basic(header: str | None, username: str, password: str) -> bool:
    """Whether an ``Authorization`` header carries these credentials (constant time)."""
    if not header or not header.lower().startswith("basic "):
        return False
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return False
    user, sep, given = decoded.partition(":")
    if not sep:
        return False
    ok_user = secrets.compare_digest(user.encode(), username.encode())
    ok_password = secrets.compare_digest(given.encode(), password.encode())
    return ok_user and ok_password


def _cookie(headers: Headers, name: str) -> str | None:
    for part in headers.get("cookie", "").split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            return value
    return None


class AccessMiddleware:
    """Basic auth and CSRF in one ASGI layer (reads a form body once and replays it)."""

    def __init__(self, app: ASGIApp, username: str | None, password: str | None) -> None:
        self.app = app
        self.username = username
        self.password = password

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if self.username and self.password:
            if not check_basic(headers.get("authorization"), self.username, self.password):
                response: Response = JSONResponse(
                    {"detail": "authentication required"},
                    status_code=401,
                    headers={"WWW-Authenticate": 'Basic realm="flowhawk", charset="UTF-8"'},
                )
                await response(scope, receive, send)
                return
        if scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        cookie = _cookie(headers, CSRF_COOKIE)
        given = headers.get(CSRF_HEADER)
        if cookie and given and secrets.compare_digest(cookie, given):
            await self.app(scope, receive, send)
            return
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type and content_type not in SIMPLE_TYPES:
            await self.app(scope, receive, send)
            return
        if not (headers.get("origin") or headers.get("sec-fetch-site")):
            await self.app(scope, receive, send)
            return
        if content_type == "application/x-www-form-urlencoded" and cookie:
            body, replay = await _read_body(receive)
            fields = parse_qs(body.decode("latin-1"), keep_blank_values=True)
            token = (fields.get(CSRF_FIELD) or [""])[0]
            if token and secrets.compare_digest(cookie, token):
                await self.app(scope, replay, send)
                return
        response = JSONResponse(
            {"detail": "CSRF check failed: reload the page and submit again"}, status_code=403
        )
        await response(scope, receive, send)


async def _read_body(receive: Receive) -> tuple[bytes, Receive]:
    """The whole request body, and a ``receive`` that hands it to the app again."""
    chunks: list[bytes] = []
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    body = b"".join(chunks)
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return body, replay


def csrf_token(request: Request) -> str:
    """The page's token: the cookie's, or a new one the page response will set."""
    existing = request.cookies.get(CSRF_COOKIE)
    if existing:
        return existing
    token = getattr(request.state, "csrf_new", None)
    if token is None:
        token = new_token()
        request.state.csrf_new = token
    return token


def set_csrf_cookie(request: Request, response: Response) -> None:
    token = getattr(request.state, "csrf_new", None)
    if token:
        response.set_cookie(CSRF_COOKIE, token, httponly=False, samesite="strict", path="/")
