"""Types of the optional C row loop (``_rows.c``)."""

def convert(
    data: bytes,
    start: int,
    end: int,
    ncols: int,
    keys: tuple[int, int, int, int, int, int, int],
    crlf: bool,
    buckets: list[bytearray],
    /,
) -> tuple[bytes, int, int]: ...
def count_duplicates(keys: bytearray, /) -> int: ...
