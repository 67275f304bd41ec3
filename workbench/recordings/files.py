"""Recording files: which files a path holds, the device a file is, and its rows.

A row is a dict of column → value (text from CSV, JSON values from JSON lines). Reading counts the
bytes it has consumed, so a replay can say how much of the recording it has reached.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SUFFIXES = (".csv", ".jsonl", ".ndjson")
"""CSV files, and JSON lines (one object per line)."""
_UNSAFE = re.compile(r"[^A-Za-z0-9._:-]+")
DEVICE_ID_MAX = 64


def recording_files(path: Path) -> list[Path]:
    """``path`` itself, or every recording file below it (recursively), sorted."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise ValueError(f"{path}: no such file or directory")
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
    if not files:
        raise ValueError(f"{path}: no recording files ({', '.join(SUFFIXES)}) in it")
    return files


def device_id_for(path: Path) -> str:
    """The device a file is when the rows do not say: its name, made a valid device id."""
    safe = _UNSAFE.sub("_", path.stem).strip("_")[:DEVICE_ID_MAX]
    return safe or "device"


def devices_by_file(files: list[Path]) -> dict[Path, str]:
    """Each file's device id from its name; ValueError when two files would be one device."""
    devices: dict[Path, str] = {}
    for path in files:
        device = device_id_for(path)
        other = next((p for p, d in devices.items() if d == device), None)
        if other is not None:
            raise ValueError(
                f"{other} and {path} would both be device {device!r}: rename one, or give "
                "--device-column"
            )
        devices[path] = device
    return devices


@dataclass
class Row:
    """One row of a recording file."""

    path: Path
    line: int
    """Where it starts in the file (1 is the first line)."""
    fields: dict[str, Any] | None
    """Column → value; None when the row could not be read (``problem`` says why)."""
    problem: str | None = None

    @property
    def where(self) -> str:
        return f"{self.path.name}:{self.line}"


class ByteCount:
    """Bytes read so far, over any number of files."""

    def __init__(self) -> None:
        self.read = 0


def _lines(path: Path, count: ByteCount | None) -> Iterator[str]:
    with path.open("rb") as fh:
        for number, raw in enumerate(fh):
            if count is not None:
                count.read += len(raw)
            yield raw.decode("utf-8-sig" if number == 0 else "utf-8", errors="replace")


def read_rows(path: Path, delimiter: str = ",", count: ByteCount | None = None) -> Iterator[Row]:
    """The rows of a CSV file (header first) or of a JSON-lines file (blank lines skipped)."""
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(_lines(path, count), delimiter=delimiter)
        line = 2
        for fields in reader:
            yield Row(path, line, fields)
            line = reader.line_num + 1
        return
    for number, text in enumerate(_lines(path, count), 1):
        if not text.strip():
            continue
        try:
            fields = json.loads(text)
        except ValueError as exc:
            yield Row(path, number, None, f"not JSON: {exc}")
            continue
        if isinstance(fields, dict):
            yield Row(path, number, fields)
        else:
            yield Row(path, number, None, f"not a JSON object but {type(fields).__name__}")
