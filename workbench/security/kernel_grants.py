"""Who a dashboard kernel serves, handed by the Voilà server to the kernel beyond the page's reach.

When the server hands a kernel to a page's token it writes a grant (the token's role and how the
audit log names it) next to the kernel's connection file, readable by its owner only; the kernel
reads it when it needs to know. Nothing the page sends reaches that file, so a viewer cannot
claim more than its token holds. A kernel of the dashboard server (``WORKBENCH_DASHBOARD_KERNEL``
in its environment) without a grant yet, such as a preheated one, is a viewer. A notebook's own
kernel (JupyterLab on this machine) acts for the machine's user: admin.
"""

from __future__ import annotations

import getpass
import json
import os
from dataclasses import dataclass
from pathlib import Path

GRANT_SUFFIX = ".workbench-grant"
DASHBOARD_ENV = "WORKBENCH_DASHBOARD_KERNEL"
"""Set in the dashboard server's environment, so its kernels know they serve pages."""


@dataclass(frozen=True)
class Grant:
    """The role a kernel acts in and how the audit log names whoever it acts for."""

    role: str
    actor: str


def grant_path(connection_file: str | Path) -> Path:
    """Where the grant of the kernel with this connection file lives."""
    return Path(connection_file).with_suffix(GRANT_SUFFIX)


def write_grant(connection_file: str | Path, grant: Grant) -> None:
    """Hand the kernel to ``grant`` (atomically; readable by the server's user only)."""
    path = grant_path(connection_file)
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({"role": grant.role, "actor": grant.actor}, out)
    os.replace(temporary, path)


def remove_grant(connection_file: str | Path) -> None:
    """The kernel is gone: so is its grant."""
    grant_path(connection_file).unlink(missing_ok=True)


def kernel_grant() -> Grant:
    """In a kernel: the grant it acts under."""
    if not os.environ.get(DASHBOARD_ENV):
        return Grant("admin", f"{getpass.getuser()} (notebook)")
    try:
        from ipykernel.connect import get_connection_file

        data = json.loads(grant_path(get_connection_file()).read_text())
        return Grant(str(data["role"]), str(data["actor"]))
    except (OSError, RuntimeError, ValueError, KeyError):
        return Grant("viewer", "dashboard page (no token yet)")
