"""Wake-ups for live pages: one LISTEN connection fans PostgreSQL notifications out to streams.

Log writers send ``pg_notify('flowhawk_logs', execution_id)`` after each batch; state changes
go to ``flowhawk_executions`` as ``execution_id:STATE``. A stream subscribes to its execution
and sleeps until woken or until its poll interval passes (the fallback when the LISTEN
connection is down).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import defaultdict

import psycopg

log = logging.getLogger("flowhawk.server")

CHANNELS = ("flowhawk_logs", "flowhawk_executions")


class LiveHub:
    def __init__(self, url: str) -> None:
        self.url = url
        self.stopping = threading.Event()
        self.listening = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._thread: threading.Thread | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread = threading.Thread(target=self._listen, name="flowhawk-live", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.stopping.set()
        if self._loop is not None:
            for key in list(self._waiters):
                self._loop.call_soon_threadsafe(self._wake, key)

    @property
    def poll_interval(self) -> float:
        """How long a stream sleeps without a notification: long while LISTEN works."""
        return 1.0 if self.listening.is_set() else 0.2

    def subscribe(self, key: str) -> asyncio.Event:
        event = asyncio.Event()
        self._waiters[key].add(event)
        return event

    def unsubscribe(self, key: str, event: asyncio.Event) -> None:
        waiters = self._waiters.get(key)
        if waiters is not None:
            waiters.discard(event)
            if not waiters:
                self._waiters.pop(key, None)

    async def wait(self, event: asyncio.Event, timeout: float | None = None) -> None:
        try:
            await asyncio.wait_for(event.wait(), timeout or self.poll_interval)
        except TimeoutError:
            pass
        event.clear()

    def _wake(self, key: str) -> None:
        for event in self._waiters.get(key, ()):
            event.set()

    def _listen(self) -> None:
        while not self.stopping.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
                    for channel in CHANNELS:
                        conn.execute(f"LISTEN {channel}")
                    self.listening.set()
                    while not self.stopping.is_set():
                        for note in conn.notifies(timeout=0.5, stop_after=200):
                            key = note.payload.split(":", 1)[0]
                            if self._loop is not None and key in self._waiters:
                                self._loop.call_soon_threadsafe(self._wake, key)
            except Exception as exc:
                log.warning("live updates: LISTEN lost, polling meanwhile: %s", exc)
            self.listening.clear()
            self.stopping.wait(1.0)
