"""The dashboard server against a hostile viewer, who holds a viewer token as the printed link
gives one: real servers (`start_dashboard`), raw HTTP and kernel sockets, and Chromium for the
page itself."""

from __future__ import annotations

import asyncio
import re
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tornado.httpclient import HTTPClientError

from tests.dashboard_client import Viewer, message, receive, send
from tests.kafka_helpers import PORT_BASE
from tests.waiting import eventually
from workbench.bench import dashboard_page as dash
from workbench.bench.browser import chromium
from workbench.broker import LocalBroker
from workbench.config import Settings
from workbench.security.manage import create_token, revoke_token
from workbench.voila import start_dashboard, stop_dashboard

TLS = Path(__file__).parent / "data" / "tls"
CONNECT_S = 15
"""Seconds a kernel may go without a connected page, in these tests."""

pytestmark = pytest.mark.kafka


def _serve(settings: Settings, port: int, log: Path, **env: str) -> Iterator[dict]:
    env = {"WORKBENCH_DASHBOARD_CONNECT_S": str(CONNECT_S), **env}
    connect_s = float(env["WORKBENCH_DASHBOARD_CONNECT_S"])
    tls = (TLS / "cert.pem", TLS / "key.pem") if env.pop("tls", None) else None
    proc = start_dashboard(settings, port=port, log=log, env=env, tls=tls)
    scheme = "https" if tls else "http"
    try:
        yield {
            "base": f"{scheme}://127.0.0.1:{port}",
            "log": log,
            "settings": settings,
            "connect_s": connect_s,
        }
    finally:
        stop_dashboard(proc)


@pytest.fixture(scope="module")
def server(broker: LocalBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """The dashboard server as `workbench up` runs it (limits generous)."""
    log = tmp_path_factory.mktemp("voila") / "voila.log"
    yield from _serve(broker.settings, PORT_BASE + 360, log)


@pytest.fixture(scope="module")
def small_tls_server(
    broker: LocalBroker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict]:
    """A second server: HTTPS, at most 2 pages a token and 3 in all, 20 s to connect."""
    log = tmp_path_factory.mktemp("voila-tls") / "voila.log"
    yield from _serve(
        broker.settings,
        PORT_BASE + 365,
        log,
        WORKBENCH_DASHBOARD_PAGES_PER_TOKEN="2",
        WORKBENCH_DASHBOARD_PAGES_MAX="3",
        WORKBENCH_DASHBOARD_CONNECT_S="20",
        tls="yes",
    )


def _token(settings: Settings, name: str) -> str:
    return create_token(settings, name, "viewer", "test")[0]


def _answers(viewer: Viewer, within_s: float = 5) -> bool:
    return viewer.request("/voila/static/voila.js", timeout=within_s).status == 200


def _alive(viewer: Viewer, kernel_id: str) -> bool:
    """Whether the owner still sees its kernel."""
    return viewer.request(f"/api/kernels/{kernel_id}").status == 200


# ---- 1. denial of service through the legacy kernel protocol ------------------------------


def test_a_legacy_protocol_kernel_socket_is_refused_and_v1_still_works(server: dict) -> None:
    viewer = Viewer(server["base"])
    kernel = viewer.open_page(_token(server["settings"], "dos"))

    async def probe() -> int:
        with pytest.raises(HTTPClientError) as refused:
            await viewer.channels(kernel, v1=False)  # the request that hung Voilà 0.5.13
        assert refused.value.code == 400
        socket = await viewer.channels(kernel, v1=True)
        try:
            send(socket, message("comm_info_request", {}))
            comms = (await receive(socket, "comm_info_reply", 30))["comms"]
            for comm_id in comms:  # every widget's state, binary buffers and all
                send(
                    socket,
                    message("comm_msg", {"comm_id": comm_id, "data": {"method": "request_state"}}),
                )
            await asyncio.sleep(2)
        finally:
            socket.close()
        return len(comms)

    assert asyncio.run(probe()) > 50  # the dashboard's widgets answered
    assert _answers(viewer, within_s=2)
    assert "kernel channels need the v1.kernel.websocket.jupyter.org subprotocol" in (
        server["log"].read_text()
    )


def test_the_real_page_negotiates_v1_and_renders(server: dict) -> None:
    token = _token(server["settings"], "browser")
    with chromium() as context:
        page = dash.open_dashboard(context, f"{server['base']}/?token={token}")
        assert "token=" not in page.url  # traded for the cookie, then a clean address
        assert dash.pipeline_threshold(page)


# ---- 2. kernel exhaustion ------------------------------------------------------------------


def test_a_kernel_no_page_connects_to_is_shut_down(server: dict) -> None:
    viewer = Viewer(server["base"])
    token = _token(server["settings"], "no javascript")
    kernels = [viewer.open_page(token) for _ in range(2)]
    assert all(_alive(viewer, k) for k in kernels)
    assert eventually(lambda: not any(_alive(viewer, k) for k in kernels), CONNECT_S + 10)
    assert f"no page connected to kernel {kernels[0]}" in server["log"].read_text()


def test_a_kernel_whose_socket_stays_open_is_kept(server: dict) -> None:
    viewer = Viewer(server["base"])
    kernel = viewer.open_page(_token(server["settings"], "connected"))

    async def hold() -> bool:
        socket = await viewer.channels(kernel)
        await asyncio.sleep(CONNECT_S + 3)
        alive = await asyncio.to_thread(_alive, viewer, kernel)
        socket.close()
        return alive

    assert asyncio.run(hold())
    assert eventually(lambda: not _alive(viewer, kernel), CONNECT_S + 10)  # and freed once it left


def test_pages_are_capped_per_token_and_in_all(small_tls_server: dict) -> None:
    settings = small_tls_server["settings"]
    first = Viewer(small_tls_server["base"])
    token = _token(settings, "capped")
    for _ in range(2):
        first.open_page(token)
    third = first.request(f"/?token={token}")
    assert third.status == 429
    assert "already has 2 dashboard pages open (at most 2)" in third.body
    assert third.headers["Retry-After"] == "60"
    other = Viewer(small_tls_server["base"])
    other.open_page(_token(settings, "another"))  # a third page in all: still served
    fourth = Viewer(small_tls_server["base"]).request(f"/?token={_token(settings, 'late')}")
    assert fourth.status == 429 and "maximum of 3 pages" in fourth.body
    # Unconnected, they are all shut down, and the token may open pages again.
    reaped_within = small_tls_server["connect_s"] + 15
    assert eventually(lambda: first.request("/").status == 200, reaped_within)


# ---- 3. kernels are owned ------------------------------------------------------------------


def test_another_token_cannot_touch_a_kernel(server: dict) -> None:
    owner, intruder = Viewer(server["base"]), Viewer(server["base"])
    owner_token, intruder_token = (
        _token(server["settings"], "owner"),
        _token(server["settings"], "x"),
    )
    kernel = owner.open_page(owner_token)
    intruder.open_page(intruder_token)
    as_intruder = {"Authorization": f"token {intruder_token}"}  # no XSRF check with a token
    assert intruder.request(f"/api/kernels/{kernel}").status == 403
    deleted = intruder.request(f"/api/kernels/{kernel}", method="DELETE", headers=as_intruder)
    assert deleted.status == 403 and "_xsrf" not in deleted.body
    stopped = intruder.request(f"/voila/api/shutdown/{kernel}", method="POST", headers=as_intruder)
    assert stopped.status == 403 and "belongs to another viewer" in stopped.body

    async def join(viewer: Viewer, path: str = "channels") -> int:
        try:
            socket = await viewer.channels(kernel)
        except HTTPClientError as refused:
            return refused.code
        socket.close()
        return 101

    assert asyncio.run(join(intruder)) == 403
    assert asyncio.run(join(owner)) == 101
    assert _alive(owner, kernel)  # nothing the intruder did stopped it
    as_owner = {"Authorization": f"token {owner_token}"}
    assert owner.request(f"/api/kernels/{kernel}", method="DELETE", headers=as_owner).status == 204


def test_request_info_socket_needs_sign_in_and_ownership(server: dict) -> None:
    owner, intruder, stranger = (Viewer(server["base"]) for _ in range(3))
    kernel = owner.open_page(_token(server["settings"], "info-owner"))
    intruder.open_page(_token(server["settings"], "info-intruder"))

    async def query(viewer: Viewer) -> int:
        from tornado.httpclient import HTTPRequest
        from tornado.websocket import websocket_connect

        url = server["base"].replace("http", "ws", 1) + f"/voila/query/{kernel}"
        try:
            socket = await websocket_connect(HTTPRequest(url, headers={"Cookie": viewer.cookie}))
        except HTTPClientError as refused:
            return refused.code
        socket.close()
        return 101

    assert asyncio.run(query(stranger)) == 403  # Voilà's own took anyone, signed in or not
    assert asyncio.run(query(intruder)) == 403
    assert asyncio.run(query(owner)) == 101


# ---- 4. revocation closes open kernel sockets ------------------------------------------------


def test_revoking_a_token_closes_its_kernel_sockets_at_once(server: dict) -> None:
    settings = server["settings"]
    token, record = create_token(settings, "to revoke", "viewer", "test")
    viewer = Viewer(server["base"])
    kernel = viewer.open_page(token)

    async def revoke_while_connected() -> tuple[float, int | None]:
        socket = await viewer.channels(kernel)
        send(socket, message("kernel_info_request", {}))
        await receive(socket, "kernel_info_reply", 30)
        revoked_at = time.monotonic()
        await asyncio.to_thread(revoke_token, settings, record["token_id"], "test")
        while await socket.read_message() is not None:
            pass  # whatever was in flight; then the server closes the socket
        return time.monotonic() - revoked_at, socket.close_code

    took, code = asyncio.run(revoke_while_connected())
    assert code == 1008 and took < 3, (took, code)
    logged = f"token revoked: shutting down its kernel {kernel}"
    assert eventually(lambda: logged in server["log"].read_text(), 5)
    assert viewer.request("/", follow=False).status in (302, 403)  # and the cookie is dead


# ---- 5. tokens stay out of logs and the address bar ----------------------------------------


def test_the_link_token_becomes_a_cookie_and_leaves_the_address(server: dict) -> None:
    viewer = Viewer(server["base"])
    token = _token(server["settings"], "clean url")
    first = viewer.request(f"/?token={token}&theme=dark", follow=False)
    assert first.status == 302 and first.headers["Location"] == "/?theme=dark"
    cookie = first.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    assert viewer.request("/?theme=dark", follow=False).status == 200


def test_no_token_reaches_the_log_and_the_log_is_private(server: dict) -> None:
    token = _token(server["settings"], "logged")
    viewer = Viewer(server["base"])
    viewer.open_page(token)
    nobody = "00000000-0000-4000-8000-000000000000"
    assert viewer.request(f"/api/kernels/{nobody}?token={token}").status == 403  # logged
    Viewer(server["base"]).request(f"/?token={token[:-4]}junk")  # a failing one too
    text = server["log"].read_text()
    assert "token=[redacted]" in text
    assert re.search(r"wb_[0-9a-f]{8}_[A-Za-z0-9_-]{20,}", text) is None
    assert stat.S_IMODE(server["log"].stat().st_mode) == 0o600


# ---- 10. smaller holes ---------------------------------------------------------------------


def test_sign_out_clears_the_session(server: dict) -> None:
    viewer = Viewer(server["base"])
    viewer.open_page(_token(server["settings"], "leaving"))
    out = viewer.request("/logout", follow=False)
    assert out.status == 302 and out.headers["Location"].endswith("/login")
    assert viewer.request("/", follow=False).status == 302  # back to the sign-in page


def test_https_only_with_a_secure_cookie(small_tls_server: dict) -> None:
    base = small_tls_server["base"]
    viewer = Viewer(base)
    token = _token(small_tls_server["settings"], "tls")
    first = viewer.request(f"/?token={token}", follow=False)
    assert first.status == 302 and "Secure" in first.headers["Set-Cookie"]
    plain = Viewer(base.replace("https://", "http://"))
    with pytest.raises(OSError):
        plain.request("/voila/static/voila.js", timeout=5)


def test_failed_sign_ins_are_throttled(small_tls_server: dict) -> None:
    """Last in the module: it locks 127.0.0.1 out of this server for a minute."""
    settings = small_tls_server["settings"]
    signed_in = Viewer(small_tls_server["base"])
    signed_in.request(f"/?token={_token(settings, 'patient')}", follow=False)
    attacker = Viewer(small_tls_server["base"])
    statuses = [
        attacker.request(f"/?token=wb_00000000_guess{i}", follow=False).status for i in range(11)
    ]
    assert statuses[:10] == [302] * 10 and statuses[10] == 429, statuses
    locked = attacker.request(f"/?token={_token(settings, 'right one')}", follow=False)
    assert locked.status == 429 and "too many failed sign-ins" in locked.body
    assert signed_in.request("/voila/static/voila.js").status == 200  # sessions are unaffected
