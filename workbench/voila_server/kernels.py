"""Who owns which dashboard kernel, how many each token may have, and which are abandoned.

A kernel belongs to the token whose page load was given it (a preheated one, or one started for
that page). Only that token may use its REST routes and sockets. Kernels are capped per token and
in total; a kernel with no page connected for ``connect_s`` (never connected, or left) is shut
down, so a link opened without JavaScript, or a page gone without saying so, frees its memory.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from workbench.security.kernel_grants import Grant, remove_grant, write_grant

VIEWER: contextvars.ContextVar[str | None] = contextvars.ContextVar("viewer", default=None)
"""The token id of the page load being served, set by the page handler around its render."""


@dataclass
class Lease:
    """One kernel handed to one token."""

    owner: str
    idle_since: float
    """When the kernel last had no socket open (its hand-out, or its last socket's close)."""
    sockets: set[Any] = field(default_factory=set)


class KernelOwners:
    """The registry of handed-out kernels; used on the server's event loop only."""

    def __init__(self, per_token: int, total: int, connect_s: float) -> None:
        if per_token < 1 or total < 1 or connect_s <= 0:
            raise ValueError("kernel limits must be at least 1 and connect_s above 0 s")
        self.per_token = per_token
        self.total = total
        self.connect_s = connect_s
        self._leases: dict[str, Lease] = {}
        self._pending: dict[str, int] = {}

    def owner(self, kernel_id: str | None) -> str | None:
        """The token id that owns ``kernel_id`` (None: nobody, e.g. a preheated kernel)."""
        lease = self._leases.get(kernel_id or "")
        return lease.owner if lease else None

    def bind(self, kernel_id: str, owner: str) -> None:
        """Hand ``kernel_id`` to ``owner``."""
        self._leases[kernel_id] = Lease(owner, time.monotonic())

    def forget(self, kernel_id: str) -> None:
        """The kernel is gone (shut down, culled or died)."""
        self._leases.pop(kernel_id, None)

    def kernel_ids(self) -> list[str]:
        """Every handed-out kernel."""
        return list(self._leases)

    def holders(self) -> set[str]:
        """Token ids that own a kernel now."""
        return {lease.owner for lease in self._leases.values()}

    def owned_by(self, owners: set[str]) -> list[str]:
        """Kernels owned by any of ``owners``."""
        return [k for k, lease in self._leases.items() if lease.owner in owners]

    def reserve(self, owner: str) -> str | None:
        """Hold a place for one more kernel of ``owner``; why not, if a limit is reached.

        Call :meth:`release` once the page load has its kernel (or failed).
        """
        mine = sum(lease.owner == owner for lease in self._leases.values())
        mine += self._pending.get(owner, 0)
        everyone = len(self._leases) + sum(self._pending.values())
        if mine >= self.per_token:
            return (
                f"this token already has {mine} dashboard pages open (at most "
                f"{self.per_token}); close one, or wait {self.connect_s:.0f} s after closing it"
            )
        if everyone >= self.total:
            return (
                f"the dashboard is serving its maximum of {self.total} pages; try again in a minute"
            )
        self._pending[owner] = self._pending.get(owner, 0) + 1
        return None

    def release(self, owner: str) -> None:
        """The page load that :meth:`reserve` held a place for is done."""
        left = self._pending.get(owner, 0) - 1
        if left > 0:
            self._pending[owner] = left
        else:
            self._pending.pop(owner, None)

    def opened(self, kernel_id: str, socket: Any) -> None:
        """A page connected a channels socket to ``kernel_id``."""
        lease = self._leases.get(kernel_id)
        if lease is not None:
            lease.sockets.add(socket)

    def closed(self, kernel_id: str, socket: Any) -> None:
        """A channels socket of ``kernel_id`` closed."""
        lease = self._leases.get(kernel_id)
        if lease is not None and socket in lease.sockets:
            lease.sockets.discard(socket)
            if not lease.sockets:
                lease.idle_since = time.monotonic()

    def sockets(self, kernel_id: str) -> list[Any]:
        """The open channels sockets of ``kernel_id``."""
        lease = self._leases.get(kernel_id)
        return list(lease.sockets) if lease else []

    def abandoned(self) -> list[str]:
        """Kernels with no socket open for ``connect_s`` or longer."""
        cutoff = time.monotonic() - self.connect_s
        leases = self._leases.items()
        return [k for k, lease in leases if not lease.sockets and lease.idle_since < cutoff]


class OwnedKernelManager:
    """Mixed in front of Voilà's kernel manager: records the owner of every kernel it hands out.

    Voilà's pool refills start kernels through ``super().start_kernel`` from its own class, past
    this mixin, so only kernels started for a page (no preheated one left) are bound here.
    """

    owners: KernelOwners
    grant_for: Callable[[str], Grant]
    """The grant a token id's pages act under (its role, its name in the audit log)."""

    def _bind(self, kernel_id: str, owner: str) -> None:
        self.owners.bind(kernel_id, owner)
        connection_file = self.get_kernel(kernel_id).connection_file  # type: ignore[attr-defined]
        write_grant(connection_file, self.grant_for(owner))

    async def get_rendered_notebook(self, *args: Any, **kwargs: Any) -> Any:
        render_task, rendered, kernel_id = await super().get_rendered_notebook(*args, **kwargs)
        self._bind(kernel_id, VIEWER.get() or "")
        return render_task, rendered, kernel_id

    async def start_kernel(self, *args: Any, **kwargs: Any) -> str:
        kernel_id = await super().start_kernel(*args, **kwargs)
        viewer = VIEWER.get()
        if viewer is not None:
            self._bind(kernel_id, viewer)
        return kernel_id

    async def shutdown_kernel(self, kernel_id: str, *args: Any, **kwargs: Any) -> Any:
        self.owners.forget(kernel_id)
        with contextlib.suppress(KeyError):
            remove_grant(self.get_kernel(kernel_id).connection_file)  # type: ignore[attr-defined]
        return await super().shutdown_kernel(kernel_id, *args, **kwargs)


def owning(manager: Any, owners: KernelOwners, grant_for: Callable[[str], Grant]) -> None:
    """Make Voilà's kernel manager ``manager`` record owners in ``owners`` and hand each kernel
    its owner's grant (``grant_for(token id)``), in place.

    Voilà builds its kernel manager class in a factory, so the mixin is put in front of whatever
    class that made, on the instance.
    """
    base = type(manager)
    manager.__class__ = type(f"Owned{base.__name__}", (OwnedKernelManager, base), {})
    manager.owners = owners
    manager.grant_for = grant_for
