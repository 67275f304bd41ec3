"""Where the notebooks that ship with the workbench are: in the installed package, or the checkout.

A wheel carries ``dashboards/`` and ``notebooks/`` inside the package (``workbench/dashboards``,
``workbench/notebooks``); a checkout (an editable install) has them at its top level.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


def shipped_dir(name: str) -> Path:
    """The shipped directory ``name`` (``dashboards`` or ``notebooks``); FileNotFoundError if the
    installation lacks it."""
    for candidate in (PACKAGE / name, PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        f"this installation of the workbench has no {name}/ (looked in {PACKAGE} and "
        f"{PACKAGE.parent}); reinstall it from a wheel or run it from a checkout"
    )


def in_checkout(path: Path) -> bool:
    """True when ``path`` is a checkout's own file (editable in place), not an installed copy."""
    return not path.resolve().is_relative_to(PACKAGE)


def copy_missing(source: Path, target: Path, progress: Callable[[str], None]) -> list[Path]:
    """Copy the notebooks of ``source`` that ``target`` lacks; never overwrites a user's edits."""
    target.mkdir(parents=True, exist_ok=True)
    copied = []
    for notebook in sorted(source.glob("*.ipynb")):
        destination = target / notebook.name
        if not destination.exists():
            shutil.copyfile(notebook, destination)
            copied.append(destination)
    if copied:
        progress(f"copied {len(copied)} example notebooks to {target}")
    return copied
