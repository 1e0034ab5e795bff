"""Cutting a CSV file's data rows into bounded segments of whole lines, checking line lengths.

A segment is at most `max(SEGMENT_BYTES, csv_max_line_bytes + 2)` bytes, read into one reused
buffer and cut after its last newline (the rest carries over to the next segment), so parsing
one segment at a time bounds memory whatever the file's size. While cutting, every line's length
is checked with a vectorized scan: a line longer than `csv_max_line_bytes` (its bytes before the
newline, a carriage return included) is a 422 naming its line number in the file.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.datasets.conversion import FormatError

SEGMENT_BYTES = 4 << 20
_SCAN_BYTES = 1 << 20


@dataclass(frozen=True)
class Segment:
    line: int  # the file line number of its first line (the header is line 1)
    data: memoryview  # whole lines; valid until the next segment is read
    longest: int  # the length of its longest line, newline excluded


def _too_long(line: int, limit: int) -> FormatError:
    return FormatError(
        f"line {line} is longer than {limit} bytes, the longest line accepted",
        loc=("body", "line", line),
    )


def _longest_line(data: memoryview, line: int, limit: int, final: bool) -> int:
    """The longest line in `data` (ending in a newline unless `final`), or a 422 past `limit`."""
    longest, previous = 0, -1
    for offset in range(0, len(data), _SCAN_BYTES):
        part = np.frombuffer(data[offset : offset + _SCAN_BYTES], dtype=np.uint8)
        ends = np.flatnonzero(part == 10) + offset
        if ends.size:
            lengths = np.diff(ends, prepend=previous) - 1
            over = np.flatnonzero(lengths > limit)
            if over.size:
                raise _too_long(line + int(over[0]), limit)
            longest = max(longest, int(lengths.max()))
            line += ends.size
            previous = int(ends[-1])
    tail = len(data) - previous - 1
    if tail > limit or (tail and not final):
        raise _too_long(line, limit)
    return max(longest, tail)


def segments(raw: Path, start: int, limit: int) -> Iterator[Segment]:
    """The data rows from byte `start` (the line after the header) on, segment by segment."""
    size = max(SEGMENT_BYTES, limit + 2)
    buffer = bytearray(size)
    view = memoryview(buffer)
    have, line = 0, 2
    with open(raw, "rb") as file:
        file.seek(start)
        while True:
            while have < size and (got := file.readinto(view[have:])):
                have += got
            if have == 0:
                return
            final = have < size
            cut = have if final else buffer.rfind(b"\n", 0, have) + 1
            if cut == 0:
                raise _too_long(line, limit)
            data = view[:cut]
            longest = _longest_line(data, line, limit, final)
            yield Segment(line, data, longest)
            line += buffer.count(b"\n", 0, cut)
            buffer[: have - cut] = buffer[cut:have]
            have -= cut
