"""The suite's process hygiene: a test that leaves a process running is stopped and told so, and a
run that ends with one alive fails; the helpers tolerate zombies and vanished processes."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest

from tests import processes

ROOT = Path(__file__).resolve().parents[1]

LEAKY = """
import subprocess, sys

import pytest

pytest_plugins = ["tests.processes"]


def sleeper(tag):
    return subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(300)", tag], start_new_session=True
    )


@pytest.fixture(scope="session")
def session_sleeper():
    sleeper("{tag}-session")  # never stopped: the run must fail at its end


def test_leaks_a_process():
    sleeper("{tag}-passing")


def test_fails_and_leaks_a_process():
    sleeper("{tag}-failing")
    assert False, "made to fail"


def test_needs_the_session_sleeper(session_sleeper):
    pass
"""


def test_leftover_processes_are_stopped_and_reported(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    tag = f"leak-{uuid.uuid4().hex[:8]}"
    pytester.makepyfile(test_leaky=LEAKY.replace("{tag}", tag))
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.setenv("WORKBENCH_TEST_LINGER_S", "1")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    output = result.stdout.str()
    result.assert_outcomes(passed=2, failed=1, errors=2)
    assert "process(es) the test started were still running" in output
    assert f"{tag}-passing" in output and f"{tag}-failing" in output
    assert "processes left running" in output and f"{tag}-session" in output
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert processes.using(tag) == []  # all three sleepers were stopped


def test_helpers_tolerate_zombies_and_vanished_processes() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    zombie = psutil.Process(child.pid)
    while zombie.status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        with pytest.raises(psutil.ZombieProcess):
            zombie.cmdline()  # what psutil does to a naive helper
        assert processes.cmdline(zombie) == []
        assert processes.environ(zombie) == {}
        assert not processes.alive(zombie)
        assert processes.gone(child.pid)
        assert child.pid not in {p.pid for p in processes.descendants(psutil.Process().pid)}
    finally:
        child.wait()
    assert processes.gone(child.pid)  # reaped: the pid no longer exists
    assert processes.cmdline(zombie) == [] and not processes.alive(zombie)
