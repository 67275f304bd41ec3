"""Run a ``workbench`` command as a user's script does: a child process in a session of its own,
started with SIGINT ignored (what a shell does to a script's background job), its output collected
line by line as it comes; leaving the ``with`` block kills the whole process group."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class RunningCommand:
    """``python -c CODE ARGS…`` (by default the ``workbench`` entry point), or ``program ARGS…``,
    in its own session."""

    ENTRY = "import sys; from workbench.cli import main; sys.exit(main(sys.argv[1:]))"

    def __init__(
        self,
        *args: str,
        env: dict[str, str | None] | None = None,
        code: str = ENTRY,
        program: Sequence[str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.proc = subprocess.Popen(
            [*(program or (sys.executable, "-c", code)), *args],
            cwd=cwd,
            env={
                k: v
                for k, v in {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}.items()
                if v is not None  # None: not in the command's environment
            },
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            preexec_fn=_ignore_sigint,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        """Everything printed so far."""
        return "".join(self.lines)

    def wait_for(self, pattern: str, timeout_s: float = 60, after: int = 0) -> re.Match:
        """The first match of ``pattern`` in the lines from index ``after`` on; fails on timeout
        or when the command ends without printing it."""
        deadline = time.monotonic() + timeout_s
        while True:
            for line in self.lines[after:]:
                if match := re.search(pattern, line):
                    return match
            if self.proc.poll() is not None and not self._reader.is_alive():
                raise AssertionError(
                    f"ended ({self.proc.returncode}) before {pattern!r}:\n{self.output}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"no {pattern!r} after {timeout_s:.0f} s:\n{self.output}")
            time.sleep(0.1)

    def stop(self, sig: signal.Signals, timeout_s: float) -> tuple[int, float]:
        """Send ``sig`` to the command alone; (exit code, seconds it took to exit)."""
        sent = time.monotonic()
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout_s)
        self._reader.join(5)
        return code, time.monotonic() - sent

    def kill(self) -> None:
        """Kill the command's whole process group, if anything of it still runs."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def __enter__(self) -> RunningCommand:
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.kill()
