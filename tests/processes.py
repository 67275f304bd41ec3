"""Every process the suite starts is stopped: after each test, whatever its outcome, and at the end.

Each process inherits two variables from the process that started it: ``WORKBENCH_TEST_RUN``
(one value per pytest run) and ``WORKBENCH_TEST_OWNER`` (``test`` for a test and its
function-scoped fixtures, ``<scope>:<fixture>`` for a longer-lived fixture). So a broker started
by ``workbench up``, or a kernel started by a Voilà server, is found even after the process that
started it is gone.

- After each test, processes it owned that are still alive (once 10 s are up) are stopped — their
  process groups first (SIGTERM, then SIGKILL), so a server cannot restart a kernel — and the test
  errors with the list.
- When the run ends, any process of the run still alive is stopped and the run fails, loudly.

The helpers below tolerate processes that vanish or turn zombie while they are inspected.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from collections.abc import Iterable, Iterator

import psutil
import pytest

RUN_VAR = "WORKBENCH_TEST_RUN"
OWNER_VAR = "WORKBENCH_TEST_OWNER"
TEST_OWNER = "test"
LINGER_S = float(os.environ.get("WORKBENCH_TEST_LINGER_S", "10"))
"""How long a test's processes may take to exit on their own after its teardown (s)."""

PYTEST_HELPERS = ("from multiprocessing.resource_tracker import main",)
"""Command lines of helpers that live exactly as long as the pytest process that started them."""

_adopted: list[str] = []
"""Command-line fragments of processes that outlive the test that (re)started them (the session
broker, which any test may restart)."""


def cmdline(proc: psutil.Process) -> list[str]:
    """The process's command line, or [] if it is gone, a zombie, or hidden."""
    try:
        return proc.cmdline()
    except psutil.Error:
        return []


def environ(proc: psutil.Process) -> dict[str, str]:
    """The process's environment, or {} if it is gone, a zombie, or hidden."""
    try:
        return proc.environ()
    except psutil.Error:
        return {}


def alive(proc: psutil.Process) -> bool:
    """True while the process runs (a zombie has ended; only its exit status is left)."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def gone(pid: int) -> bool:
    """True when process ``pid`` has ended (or is a zombie waiting to be reaped)."""
    try:
        return not alive(psutil.Process(pid))
    except psutil.Error:
        return True


def descendants(pid: int) -> list[psutil.Process]:
    """The live descendants of process ``pid`` ([] once it is gone)."""
    try:
        return [p for p in psutil.Process(pid).children(recursive=True) if alive(p)]
    except psutil.Error:
        return []


def using(path: object) -> list[psutil.Process]:
    """Live processes whose command line mentions ``path`` (a data dir, a config file)."""
    mark = str(path)
    return [p for p in psutil.process_iter() if alive(p) and any(mark in a for a in cmdline(p))]


def describe(proc: psutil.Process) -> str:
    """pid and command line, shortened, for error messages."""
    line = " ".join(cmdline(proc)) or "?"
    return f"pid {proc.pid}: {line[:200]}"


def run_processes(owner: str | None = None) -> list[psutil.Process]:
    """Live processes of this run (other than pytest itself), optionally only those of ``owner``."""
    run = os.environ[RUN_VAR]
    found = []
    for proc in psutil.process_iter():
        if proc.pid == os.getpid():
            continue
        env = environ(proc)
        if env.get(RUN_VAR) != run or not alive(proc):
            continue
        if any(helper in " ".join(cmdline(proc)) for helper in PYTEST_HELPERS):
            continue
        if owner is None or env.get(OWNER_VAR) == owner:
            found.append(proc)
    return found


def _unadopted(processes: Iterable[psutil.Process]) -> list[psutil.Process]:
    return [p for p in processes if not any(mark in " ".join(cmdline(p)) for mark in _adopted)]


def stop(processes: list[psutil.Process], grace_s: float = 5.0) -> None:
    """SIGTERM each process's group (never pytest's own) and the process, then SIGKILL what is
    left."""
    own_group = os.getpgrp()
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for proc in processes:
            with contextlib.suppress(OSError, psutil.Error):
                group = os.getpgid(proc.pid)
                if group != own_group:
                    os.killpg(group, sig)
                proc.send_signal(sig)
        _, processes = psutil.wait_procs(processes, timeout=grace_s)
        processes = [p for p in processes if alive(p)]
        if not processes:
            return


def stop_all(owner: str | None) -> list[str]:
    """Stop the run's live processes (of ``owner``), rescanning for any a dying parent restarted;
    returns their descriptions."""
    stopped: list[str] = []
    for _ in range(3):
        found = run_processes(owner)
        if owner is not None:
            found = _unadopted(found)
        if not found:
            break
        stopped += [describe(p) for p in found]
        stop(found)
    return stopped


@contextlib.contextmanager
def owned_by(owner: str) -> Iterator[None]:
    """Processes started inside the block belong to ``owner`` (not to the current test)."""
    previous = os.environ.get(OWNER_VAR, TEST_OWNER)
    os.environ[OWNER_VAR] = owner
    try:
        yield
    finally:
        os.environ[OWNER_VAR] = previous


def adopt(mark: str) -> None:
    """Processes whose command line contains ``mark`` are left alone after tests (the session
    cleans them up)."""
    _adopted.append(mark)


def pytest_configure(config: pytest.Config) -> None:
    os.environ[RUN_VAR] = uuid.uuid4().hex
    os.environ[OWNER_VAR] = TEST_OWNER


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef, request: pytest.FixtureRequest) -> object:
    if fixturedef.scope == "function":
        return (yield)
    with owned_by(f"{fixturedef.scope}:{fixturedef.argname}"):
        return (yield)


@pytest.fixture(autouse=True)
def _no_process_outlives_its_test() -> Iterator[None]:
    """Autouse, so it is torn down after the test's other function-scoped fixtures."""
    yield
    deadline = time.monotonic() + LINGER_S
    while _unadopted(run_processes(TEST_OWNER)) and time.monotonic() < deadline:
        time.sleep(0.25)
    leftovers = stop_all(TEST_OWNER)
    if leftovers:
        pytest.fail(
            f"{len(leftovers)} process(es) the test started were still running "
            f"{LINGER_S:.0f} s after it ended (now stopped):\n  " + "\n  ".join(leftovers),
            pytrace=False,
        )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    leftovers = stop_all(owner=None)
    if not leftovers:
        return
    message = (
        f"\n{len(leftovers)} process(es) started by this test run were still running at its end "
        "(now stopped):\n  " + "\n  ".join(leftovers) + "\n"
    )
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_sep("!", "processes left running", red=True, bold=True)
        reporter.write(message)
    else:
        print(message)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
