"""The dashboard server's pure parts: its route swap and its kernel registry (the servers
themselves are tested in test_dashboard_security)."""

from __future__ import annotations

import time

import pytest

from workbench.voila_server.app import swap_handlers
from workbench.voila_server.handlers import ROUTES
from workbench.voila_server.kernels import KernelOwners


class Stock:
    pass


class Ours:
    pass


def test_every_guarded_route_is_swapped_and_a_missing_one_refuses_to_serve() -> None:
    routes = [("/a", Stock, {"x": 1}), ("/b", dict)]
    assert swap_handlers(routes, {Stock: Ours}) == [("/a", Ours, {"x": 1}), ("/b", dict)]
    with pytest.raises(RuntimeError, match="no longer routes Stock"):
        swap_handlers([("/b", dict)], {Stock: Ours})
    assert len(ROUTES) == 4  # channels, shutdown, request info, the page


def test_the_registry_caps_pages_and_finds_abandoned_kernels() -> None:
    owners = KernelOwners(per_token=2, total=3, connect_s=0.2)
    assert owners.reserve("a") is None and owners.reserve("a") is None
    assert "already has 2 dashboard pages open" in owners.reserve("a")
    owners.bind("k1", "a")
    owners.release("a")
    assert owners.reserve("b") is None
    assert "maximum of 3 pages" in owners.reserve("c")  # k1 + a's pending + b's pending
    owners.release("a")
    owners.release("b")
    owners.bind("k2", "b")
    owners.opened("k2", socket := object())
    assert owners.owner("k1") == "a" and owners.owner("preheated") is None
    time.sleep(0.3)
    assert owners.abandoned() == ["k1"]  # k2 has a page connected
    owners.closed("k2", socket)
    time.sleep(0.3)
    assert sorted(owners.abandoned()) == ["k1", "k2"]
    assert owners.owned_by({"b"}) == ["k2"] and owners.holders() == {"a", "b"}
    owners.forget("k1")
    assert owners.owner("k1") is None
