"""A recording's readings in time order, its files merged, with the rows that did not fit set aside.

Each file is expected in time order (a row earlier than its file's previous one simply comes
when its file reaches it); files are merged by time, ties in file order, so one device's rows keep
their order and a replay of the same recording is the same sequence.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TypeVar

from workbench.recordings.convert import Converted, RecordingFormat, RowConverter, RowProblem
from workbench.recordings.files import ByteCount, devices_by_file, read_rows

T = TypeVar("T")
REASONS_KEPT = 5


class Skipped:
    """Rows that are not readings: how many, and the first few reasons."""

    def __init__(self) -> None:
        self.count = 0
        self.reasons: list[str] = []

    def add(self, reason: str) -> None:
        self.count += 1
        if len(self.reasons) < REASONS_KEPT:
            self.reasons.append(reason)

    def lines(self) -> list[str]:
        """What to tell the user: the count, then the first reasons (nothing when none)."""
        if not self.count:
            return []
        rows = "1 row" if self.count == 1 else f"{self.count:,} rows"
        shown = f" (the first {len(self.reasons)})" if self.count > len(self.reasons) else ""
        return [f"{rows} skipped, not readings{shown}:", *(f"  {r}" for r in self.reasons)]


def in_time_order(streams: Iterable[Iterable[T]], time: Callable[[T], object]) -> Iterator[T]:
    """The items of every stream, merged by ``time`` (ties: earlier streams first)."""
    return heapq.merge(*streams, key=time)


def file_rows(
    path: Path,
    device_id: str | None,
    converter: RowConverter,
    skipped: Skipped | None = None,
    count: ByteCount | None = None,
) -> Iterator[Converted | RowProblem]:
    """Each row of a file as a reading of ``device_id`` (None: its device column says), or the
    problem with it (also added to ``skipped``). ValueError when a CSV file's header lacks the
    time or device column: a wrong option, not rows to skip."""
    header_checked = path.suffix.lower() != ".csv"  # JSON lines have no header
    for row in read_rows(path, converter.form.delimiter, count):
        if not header_checked and row.fields is not None:
            _check_columns(path, row.fields, converter.form)
            header_checked = True
        try:
            yield converter.convert(row, device_id)
        except RowProblem as problem:
            if skipped is not None:
                skipped.add(str(problem))
            yield problem


def _check_columns(path: Path, columns: dict[str, object], form: RecordingFormat) -> None:
    for option, column in (
        ("--time-column", form.time_column),
        ("--device-column", form.device_column),
    ):
        if column is not None and column not in columns:
            raise ValueError(
                f"{option} {column}: {path.name} has no such column (its columns: "
                f"{', '.join(columns)})"
            )


def recording_readings(
    files: list[Path], form: RecordingFormat, skipped: Skipped, count: ByteCount | None = None
) -> Iterator[Converted]:
    """Every file's readings merged in time order; rows that are not readings go to ``skipped``."""
    converter = RowConverter(form)
    devices = devices_by_file(files) if form.device_column is None else dict.fromkeys(files)
    rows = [file_rows(path, devices[path], converter, skipped, count) for path in files]
    streams = [(r for r in stream if isinstance(r, Converted)) for stream in rows]
    return in_time_order(streams, lambda r: r.ts)
