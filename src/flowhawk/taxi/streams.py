"""One stream of COPY rows split over several connections, to use more than one core.

PostgreSQL parses a COPY in the backend that runs it, on one core; a month of a million
rows spends most of its load time there. Splitting the rows, at line ends, over two or more
``COPY ... FROM STDIN`` statements on their own connections lets the backends parse in
parallel (measured on 2 cores: 1 M rows in 3.0-3.6 s with two streams, 4.9-5.3 s with one).

Each stream runs in a thread fed through a small queue; blocks go to the stream with the
fewest waiting. Every stream remembers which rows of the whole it received, so a COPY
error's ``line N`` is turned back into the row of the whole (and so the file's line).
The streams commit on their own: the caller loads into a table that is not yet published
and drops it if anything fails.
"""

from __future__ import annotations

import queue
import re
import threading
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

_QUEUE_BLOCKS = 8
_LINE = re.compile(r"line (\d+)")


class _End:
    """The end of a stream's rows (``None`` instead aborts the stream)."""


_END = _End()


class _Abort(Exception):
    """Raised inside a stream's COPY to make it fail (psycopg then sends CopyFail)."""


class CopyStopped(Exception):
    """``should_stop()`` turned true: every stream's COPY was failed on purpose."""


class StreamCopyError(Exception):
    """A stream's COPY failed; ``row`` is the 0-based row of the whole where, when known."""

    def __init__(self, error: psycopg.Error, row: int | None) -> None:
        super().__init__(str(error))
        self.error = error
        self.row = row


@dataclass
class _Stream:
    queue: queue.Queue[bytes | _End | None] = field(
        default_factory=lambda: queue.Queue(_QUEUE_BLOCKS)
    )
    #: (first row of a block within this stream, the same row within the whole), in order
    starts: list[int] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    sent: int = 0
    rowcount: int = 0
    error: BaseException | None = None
    thread: threading.Thread | None = None

    def row_of(self, copy_line: int) -> int | None:
        """The row of the whole for ``line N`` (1-based) of this stream's COPY."""
        index = bisect_right(self.starts, copy_line - 1) - 1
        if index < 0:
            return None
        return self.offsets[index] + (copy_line - 1 - self.starts[index])


def _run_stream(
    stream: _Stream, connect: Callable[[], psycopg.Connection], statement: sql.Composed
) -> None:
    ended = False
    try:
        with connect() as conn, conn.cursor() as cur:
            with cur.copy(statement) as copy:
                while True:
                    block = stream.queue.get()
                    if block is None:
                        ended = True
                        raise _Abort
                    if isinstance(block, _End):
                        ended = True
                        break
                    copy.write(block)
            stream.rowcount = cur.rowcount
    except BaseException as exc:
        stream.error = exc
        # keep taking blocks until the end, so the feeding thread never waits on a full queue
        while not ended:
            item = stream.queue.get()
            ended = item is None or isinstance(item, _End)


def copy_in_streams(
    connect: Callable[[], psycopg.Connection],
    statement: sql.Composed,
    read: Callable[[], bytes],
    streams: int,
    should_stop: Callable[[], bool] = lambda: False,
) -> int:
    """COPY the rows ``read()`` returns (until it returns ``b""``) over ``streams``
    connections; the number of rows stored.

    Stops early, failing every COPY, when ``should_stop()`` turns true or a stream fails;
    raises :class:`StreamCopyError` for a PostgreSQL error (the first in row order when
    several streams fail), :class:`CopyStopped` when stopped, and re-raises any other
    error of a stream.
    """
    lanes = [_Stream() for _ in range(max(1, streams))]
    for number, lane in enumerate(lanes):
        lane.thread = threading.Thread(
            target=_run_stream, args=(lane, connect, statement), daemon=True,
            name=f"taxi-copy-{number}",
        )  # fmt: skip
        lane.thread.start()
    rest = b""
    row = 0
    turn = 0
    aborted = False
    try:
        while True:
            if should_stop() or any(lane.error is not None for lane in lanes):
                aborted = True
                break
            chunk = read()
            if not chunk:
                break
            data = rest + chunk if rest else chunk
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                rest = data
                continue
            block, rest = data[:cut], data[cut:]
            count = block.count(b"\n")
            turn = (turn + 1) % len(lanes)
            lane = min(lanes[turn:] + lanes[:turn], key=lambda s: s.queue.qsize())
            lane.starts.append(lane.sent)
            lane.offsets.append(row)
            lane.sent += count
            row += count
            lane.queue.put(block)
        if rest and not aborted:
            lane = lanes[0]
            lane.starts.append(lane.sent)
            lane.offsets.append(row)
            lane.queue.put(rest)
        aborted = aborted or should_stop()
    except BaseException:
        aborted = True
        raise
    finally:
        for lane in lanes:
            lane.queue.put(None if aborted else _END)
        for lane in lanes:
            assert lane.thread is not None
            lane.thread.join()
    failures: list[tuple[int, StreamCopyError]] = []
    for lane in lanes:
        error = lane.error
        if error is None or isinstance(error, _Abort):
            continue
        if isinstance(error, psycopg.Error):
            failed_row = _row_in_error(lane, error)
            failures.append(
                (failed_row if failed_row is not None else -1, StreamCopyError(error, failed_row))
            )
            continue
        raise error
    if failures:
        # a stream that failed because another one did reports a later row, or none
        failures.sort(key=lambda item: (item[0] < 0, item[0]))
        raise failures[0][1]
    if aborted:
        raise CopyStopped
    return sum(lane.rowcount for lane in lanes)


def _row_in_error(lane: _Stream, error: psycopg.Error) -> int | None:
    match = _LINE.search(error.diag.context or "")
    if not match:
        return None
    return lane.row_of(int(match.group(1)))
