"""Every ``workbench`` command answers ``--help``, and every ``--json`` form prints valid JSON
(run small, against the real broker where it needs one)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_eval_labelled import write_env_recording
from tests.test_nab import write_corpus
from workbench import __version__, profiles
from workbench.cli import build_parser, main
from workbench.config import Settings


def _commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every leaf command: its words after ``workbench`` and its parser."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
        return
    for name, sub in subs[0].choices.items():
        yield from _commands(sub, (*path, name))


COMMANDS = dict(_commands(build_parser()))
WITH_JSON = sorted(
    " ".join(words)
    for words, parser in COMMANDS.items()
    if any("--json" in a.option_strings for a in parser._actions)
)

SMALL: dict[str, str] = {
    "kafka": "status",
    "token": "list",
    "bench ingest": "--backends kafka-python --count 2000 --rates 200 --seconds 1",
    "bench detect": "--devices 30",
    "bench dashboard": "--rates 200 --seconds 3",
    "bench serve": "--clients 2 --rate 200 --devices 20 --seconds 2 --warmup 1",
    "bench fuzz": "--count 500",
    "bench scale": "--workers 1 --readings 150000 --devices 3000 --rates",  # no latency
    "bench viewers": "--viewers 1 --rate 200 --seconds 3",
    "eval simulator": "--devices 10 --rate 20 --duration 60",
    "eval nab": "",  # data and out are made per run
    "profiles check": f"{Path(profiles.__file__).with_name('default.toml')}",
    "eval labelled": "--type env_sensor --time-column ts --label-column label",  # data, out too
}
"""The smallest run of each command that has ``--json``."""
CHECKS_TARGETS = {"bench scale", "bench viewers"}
"""Benchmarks whose exit code says whether their speed targets were met."""


def test_every_json_command_has_a_small_run_here() -> None:
    assert sorted(SMALL) == WITH_JSON


@pytest.mark.parametrize("words", sorted(" ".join(w) for w in COMMANDS))
def test_every_command_answers_help(words: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main([*words.split(), "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: workbench " + words)


def test_version_and_top_level_help_from_the_console_script() -> None:
    workbench = Path(sys.executable).with_name("workbench")
    version = subprocess.run([workbench, "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.strip() == f"workbench {__version__}" and __version__ != "0+unknown"
    helped = subprocess.run([workbench, "--help"], capture_output=True, text=True, check=True)
    for words in COMMANDS:
        assert f"    {words[0]}" in helped.stdout


@pytest.mark.kafka
@pytest.mark.parametrize("words", WITH_JSON)
def test_every_json_form_prints_one_json_object(
    words: str,
    kafka: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The session broker is "the local broker" of this run; tokens go to a store of its own.
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(kafka.data_dir))
    monkeypatch.setenv("WORKBENCH_KAFKA_PORT", str(kafka.local_port))
    monkeypatch.setenv("WORKBENCH_DATABASE_URL", f"sqlite:///{tmp_path / 'store.db'}")
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    args = [*words.split(), *SMALL[words].split(), "--json"]
    if words == "eval nab":
        args += ["--data", str(write_corpus(tmp_path)), "--out", str(tmp_path / "scores")]
    if words == "eval labelled":
        data = write_env_recording(tmp_path / "recording")
        args += ["--data", str(data), "--out", str(tmp_path / "predictions")]
    code = main(args)
    figures = json.loads(capsys.readouterr().out)
    if words in CHECKS_TARGETS:  # a run this small misses the targets: it says so, exit 1
        assert code == (0 if figures["ok"] else 1) and figures["targets"], figures
    else:
        assert code == 0, figures
    assert isinstance(figures, dict | list)
    if words == "kafka":
        assert figures["running"] is True and figures["bootstrap"] == kafka.bootstrap
        assert isinstance(figures["pid"], int)


@pytest.mark.parametrize("command", ["up", "dashboard", "serve"])
def test_half_a_certificate_is_refused_with_a_reason(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cert = Path(__file__).parent / "data" / "tls" / "cert.pem"
    assert main([command, "--certfile", str(cert)]) == 2
    assert "TLS needs both a certificate file and a key file" in capsys.readouterr().err
