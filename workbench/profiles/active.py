"""The profiles a process runs on: WORKBENCH_PROFILES (``--profiles FILE`` sets it), else the
shipped default. Compiled once per file and process; child processes inherit the variable."""

from __future__ import annotations

import os
import sys
from functools import cache
from pathlib import Path

from workbench.profiles.compile import CompiledProfiles, compile_profiles
from workbench.profiles.load import load_profiles

PROFILES_ENV = "WORKBENCH_PROFILES"


@cache
def compiled(path: str | None) -> CompiledProfiles:
    """The profiles in ``path`` (None: the shipped default), compiled."""
    return compile_profiles(load_profiles(path))


def active() -> CompiledProfiles:
    """The profiles this process validates and detects with."""
    return compiled(os.environ.get(PROFILES_ENV) or None)


def shipped() -> CompiledProfiles:
    """The shipped default: the simulator's device types."""
    return compiled(None)


def activate(path: Path) -> CompiledProfiles:
    """Run this process (and the ones it starts) on the profiles in ``path``; ProfileError if the
    file is not usable. Must come before anything reads the profiles (``workbench.schema``)."""
    profiles = compiled(str(path.resolve()))
    current = os.environ.get(PROFILES_ENV) or None
    if "workbench.schema" in sys.modules and current != str(path.resolve()):
        raise RuntimeError(f"this process already runs on {current or 'the shipped profiles'}")
    os.environ[PROFILES_ENV] = str(path.resolve())
    return profiles
