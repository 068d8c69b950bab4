"""Helpers for tests that need taxi months: synthetic files and a local stand-in for the
DataTalksClub release downloads.

    from taxi_helpers import make_month, serve_taxi_files, taxi_url_path

    def test_x(tmp_path, httpserver):
        gz = make_month(tmp_path, "green", 2019, 1, rows=500)
        base = serve_taxi_files(httpserver, {taxi_url_path("green", 2019, 1): gz})
        # base + "/green/green_tripdata_2019-01.csv.gz" now serves the file
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from flowhawk.taxi.layout import layout_for
from flowhawk.taxi.synth import write_month

_CACHE: dict[tuple[str, int, int, int, int, bool], Path] = {}
_cache_dir: Path | None = None


def _session_dir() -> Path:
    global _cache_dir
    if _cache_dir is None:
        _cache_dir = Path(tempfile.mkdtemp(prefix="flowhawk-taxi-"))
        atexit.register(shutil.rmtree, _cache_dir, True)
    return _cache_dir


def taxi_url_path(taxi: str, year: int, month: int) -> str:
    """The release download path of a month: ``/green/green_tripdata_2019-01.csv.gz``."""
    return f"/{taxi}/{layout_for(taxi).filename(year, month)}.gz"


def make_month(
    tmp_path: Path,
    taxi: str,
    year: int,
    month: int,
    rows: int = 1000,
    seed: int = 0,
    gzip: bool = True,
) -> Path:
    """A synthetic month copied into ``tmp_path`` under its course file name.

    Each distinct set of arguments is generated once per test session (the output is
    deterministic) and copied, so a test may change or delete its copy freely.
    """
    key = (taxi, year, month, rows, seed, gzip)
    name = layout_for(taxi).filename(year, month) + (".gz" if gzip else "")
    cached = _CACHE.get(key)
    if cached is None or not cached.exists():
        cached = _session_dir() / f"{rows}-{seed}" / name
        write_month(cached, taxi, year, month, rows, seed=seed, gzip=gzip)
        _CACHE[key] = cached
    target = Path(tmp_path) / name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(cached, target)
    return target


def make_months(
    tmp_path: Path,
    taxi: str,
    months: Iterable[tuple[int, int]],
    rows: int = 1000,
    seed: int = 0,
) -> dict[str, Path]:
    """Several gzip months, keyed by their release download path (see ``taxi_url_path``)."""
    return {
        taxi_url_path(taxi, year, month): make_month(tmp_path, taxi, year, month, rows, seed)
        for year, month in months
    }


def _streamed(path: Path, chunk: int = 64 * 1024) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        while data := handle.read(chunk):
            yield data


def serve_taxi_files(httpserver: HTTPServer, files: Mapping[str, Path]) -> str:
    """Serve ``files`` (url path → file) from ``httpserver``; return its base URL.

    Bodies are streamed from disk with a Content-Length, as ``application/octet-stream``
    like the release downloads. Paths not registered answer 404, as a missing release
    month does (httpserver still records them, so ``check_assertions()`` would flag them).
    The base URL has no trailing slash: ``base + "/green/green_tripdata_2019-01.csv.gz"``.
    """
    httpserver.no_handler_status_code = 404
    for url_path, file in files.items():
        path = Path(file)
        if not url_path.startswith("/"):
            raise ValueError(f"url path must start with '/': {url_path!r}")

        def handler(_request: Request, path: Path = path) -> Response:
            return Response(
                _streamed(path),
                status=200,
                headers={"Content-Length": str(path.stat().st_size)},
                content_type="application/octet-stream",
                direct_passthrough=True,
            )

        httpserver.expect_request(url_path, method="GET").respond_with_handler(handler)
    return httpserver.url_for("").rstrip("/")
