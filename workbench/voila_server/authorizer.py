"""Kernels are their owner's: Jupyter Server's authorizer hook, answered from the owner registry.

Every Jupyter route that touches a kernel (``/api/kernels/<id>``, its channels) asks the
authorizer; the default one allows everything, so any viewer could stop or join another's kernel.
"""

from __future__ import annotations

from typing import Any

from jupyter_server.auth.authorizer import Authorizer
from jupyter_server.auth.identity import User


class KernelOwnerAuthorizer(Authorizer):
    """Allows a kernel route only to the token that owns the kernel; everything else to all
    signed-in viewers (the dashboard is read-only to them)."""

    def is_authorized(self, handler: Any, user: User, action: str, resource: str) -> bool:
        if resource != "kernels":
            return True
        kernel_id = handler.path_kwargs.get("kernel_id") or next(iter(handler.path_args), None)
        owner = handler.settings["workbench_kernel_owners"].owner(kernel_id)
        return owner is not None and owner == user.username
