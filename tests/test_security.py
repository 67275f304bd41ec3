"""Tokens from the command line and the public ``authenticate`` call; pseudonyms; the hub's
bounded queues (in memory: pure logic)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.kafka_helpers import env_reading
from tests.test_store import make_alert
from workbench.cli import main
from workbench.config import Settings
from workbench.security.audit import AuditLog, AuditQuery
from workbench.security.manage import create_token
from workbench.security.pseudonym import Pseudonymiser, pseudonymiser_from_env
from workbench.security.tokens import Principal, authenticate
from workbench.server.hub import Hub
from workbench.store.db import open_database


def test_token_command_creates_lists_and_revokes_and_authenticate_follows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("WORKBENCH_DATABASE_URL", raising=False)
    assert main(["token", "create", "grafana", "--role", "analyst"]) == 0
    out, err = capsys.readouterr()
    token = out.strip()
    assert token.startswith("wb_") and "shown this once" in err
    who = authenticate(token)
    assert who == Principal("grafana", "analyst", token.split("_")[1])
    assert authenticate(token + "x") is None and authenticate(None) is None
    assert (tmp_path / "workbench.db").is_file()
    assert token not in (tmp_path / "workbench.db").read_bytes().decode(errors="replace")

    assert main(["token", "list"]) == 0
    listing = capsys.readouterr().out
    assert "grafana" in listing and "analyst" in listing and token not in listing
    assert main(["token", "revoke", who.token_id]) == 0
    assert authenticate(token) is None
    assert "revoked" in capsys.readouterr().err
    audit, total = AuditLog(open_database(f"sqlite:///{tmp_path / 'workbench.db'}")).query(
        AuditQuery()
    )
    assert total == 2 and [a["action"] for a in audit] == ["token.revoke", "token.create"]
    assert audit[0]["actor"].endswith("(command line)")

    with pytest.raises(SystemExit):
        main(["token", "create", "x", "--role", "root"])
    assert "choose from 'viewer', 'analyst', 'admin'" in capsys.readouterr().err
    assert main(["token", "revoke", "nope"]) == 2
    assert "no token with id 'nope'" in capsys.readouterr().err


def test_pseudonyms_are_stable_keyed_and_cover_the_explanation(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    one, other = Pseudonymiser(b"k" * 32), Pseudonymiser(b"j" * 32)
    assert one.device("env-0001") == one.device("env-0001") != other.device("env-0001")
    assert one.device("env-0001") != one.device("env-0002")
    alert = one.alert(make_alert(1))
    assert alert.device_id == one.device("dev-1") and "dev-1" not in alert.explanation
    assert one.reading(env_reading(3, 0)).device_id == one.device("env-0003")
    with pytest.raises(ValueError, match="at least 16"):
        Pseudonymiser(b"short")
    monkeypatch.delenv("WORKBENCH_PSEUDONYM_KEY", raising=False)
    monkeypatch.delenv("WORKBENCH_PSEUDONYM_KEY_FILE", raising=False)
    assert pseudonymiser_from_env() is None
    (tmp_path / "key").write_bytes(b"k" * 32 + b"\n")
    monkeypatch.setenv("WORKBENCH_PSEUDONYM_KEY_FILE", str(tmp_path / "key"))
    assert pseudonymiser_from_env().device("a") == one.device("a")
    monkeypatch.setenv("WORKBENCH_PSEUDONYM_KEY_FILE", str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="No such file"):
        pseudonymiser_from_env()


def test_a_full_queue_drops_its_oldest_messages_and_counts_them() -> None:
    async def run() -> tuple[list[bytes], list[bytes], dict]:
        gate = asyncio.Event()
        slow_got: list[bytes] = []
        fast_got: list[bytes] = []

        async def slow(message: bytes) -> None:
            await gate.wait()
            slow_got.append(message)

        async def fast(message: bytes) -> None:
            fast_got.append(message)

        hub = Hub(max_queue=3)
        hub.add("alerts", slow, "slow")
        hub.add("alerts", fast, "fast")
        for n in range(10):
            hub.publish("alerts", b"%d" % n)
            await asyncio.sleep(0)
        await asyncio.sleep(0.01)
        stats = hub.stats()
        gate.set()
        await asyncio.sleep(0.01)
        hub.close()
        return slow_got, fast_got, stats

    slow_got, fast_got, stats = asyncio.run(run())
    assert fast_got == [b"%d" % n for n in range(10)]
    # The slow writer holds message 0; of the rest only the newest 3 waited, 6 were dropped.
    assert slow_got == [b"0", b"7", b"8", b"9"]
    by_name = {c["principal"]: c for c in stats["per_client"]}
    assert by_name["slow"]["dropped_msgs"] == 6 and by_name["fast"]["dropped_msgs"] == 0
    assert stats["dropped_msgs"] == 6


@pytest.mark.parametrize(
    "name", ["nul\x00byte", "two\nlines", "<img src=y onerror=alert(1)>", "", "x" * 65]
)
def test_token_names_refuse_control_characters_markup_and_bad_lengths(
    tmp_path: Path, name: str
) -> None:
    settings = Settings(data_dir=tmp_path)
    with pytest.raises(ValueError, match="letters, digits, spaces"):
        create_token(settings, name, "viewer", "test")
    assert create_token(settings, "Grafana (ops team) #2", "viewer", "test")[1]["name"]
