"""SIGINT and SIGTERM stop a command alike, even one started with SIGINT ignored; afterwards the
handlers it found are back."""

from __future__ import annotations

import os
import signal
import time

import pytest

from workbench.stopping import stop_signals


@pytest.fixture
def sigint_ignored():
    """As in a script's background job."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_either_signal_requests_a_stop_and_the_old_handlers_come_back(
    sigint_ignored: None, sig: signal.Signals
) -> None:
    term_before = signal.getsignal(signal.SIGTERM)
    with stop_signals() as stop:
        assert not stop.is_set()
        os.kill(os.getpid(), sig)
        assert stop.wait(5)
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    assert signal.getsignal(signal.SIGTERM) is term_before


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupting_commands_unwind_on_either_signal(
    sigint_ignored: None, sig: signal.Signals
) -> None:
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt), stop_signals(interrupt=True):
        os.kill(os.getpid(), sig)
        time.sleep(10)  # what a long computation would be doing: interrupted at once
    assert time.monotonic() - started < 5
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
