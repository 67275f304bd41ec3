"""The conda environment and pyproject.toml declare the same dependencies, requirements.lock pins
them all within their ranges, and ruff finds nothing (in the package, the tests and the
notebooks)."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"confluent-kafka": "python-confluent-kafka"}
"""PyPI name → conda-forge name where they differ."""
CONDA_ONLY = {"python", "openjdk", "maven", "pip"}


def _split(requirement: str) -> tuple[str, str]:
    name, spec = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", requirement).groups()
    return name.lower(), spec.replace(" ", "")


def _pyproject() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + project["optional-dependencies"]["test"]
    pinned = dict(_split(r) for r in requirements)
    return {CONDA_NAMES.get(name, name): spec for name, spec in pinned.items()}


def _environment() -> tuple[dict[str, str], list[str]]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["channels"] == ["conda-forge"]
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    return dict(_split(re.sub(r"^([^=<>!]+)=(\d)", r"\1==\2", d)) for d in conda), pip


def test_environment_yml_pins_what_pyproject_requires() -> None:
    conda, _ = _environment()
    wanted = _pyproject()
    extra = {k: v for k, v in conda.items() if k not in CONDA_ONLY}
    assert extra == wanted


def test_environment_yml_brings_python_java_maven_and_installs_the_checkout() -> None:
    conda, pip = _environment()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert conda["python"] == "==3.11"
    assert project["requires-python"] == ">=3.11"
    assert conda["openjdk"] == "==17"
    assert "maven" in conda
    assert pip == ["--editable .[test]"]


def test_ruff_is_clean() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "workbench", "tests", "notebooks"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _locked() -> dict[str, list[str]]:
    """Package → the versions requirements.lock pins for it (one per marker branch)."""
    pins: dict[str, list[str]] = {}
    for name, version in re.findall(
        r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)", (ROOT / "requirements.lock").read_text(), re.M
    ):
        pins.setdefault(canonicalize_name(name), []).append(version)
    return pins


def test_the_lock_pins_every_requirement_within_its_range_with_hashes() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    locked = _locked()
    for text in [*project["dependencies"], *extras["test"], *extras["dev"]]:
        requirement = Requirement(text)
        versions = locked.get(canonicalize_name(requirement.name))
        assert versions, f"{requirement.name} is not in requirements.lock: run ./wb lock"
        for version in versions:
            assert requirement.specifier.contains(version, prereleases=True), (
                f"requirements.lock pins {requirement.name}=={version}, outside {text}: "
                "run ./wb lock"
            )
    lock = (ROOT / "requirements.lock").read_text()
    assert lock.count("==") <= lock.count("--hash=sha256:")  # every pin carries its hashes
    assert "./wb lock" in lock.splitlines()[1]  # it says how it was made
