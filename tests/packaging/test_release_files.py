"""What a project people can adopt ships: a licence, a changelog, and one version everywhere."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import aiojobs_engine

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_version_is_written_once() -> None:
    project = PYPROJECT["project"]
    assert "version" not in project, "pyproject.toml sets a version: it comes from aiojobs_engine/__init__.py"
    assert project["dynamic"] == ["version"]
    assert PYPROJECT["tool"]["hatch"]["version"]["path"] == "aiojobs_engine/__init__.py"
    assert re.fullmatch(r"\d+\.\d+\.\d+", aiojobs_engine.__version__), aiojobs_engine.__version__


def test_the_installed_metadata_carries_that_version() -> None:
    installed = importlib.metadata.version("aiojobs_engine")
    assert installed == aiojobs_engine.__version__, (
        f"installed metadata says {installed}, aiojobs_engine.__version__ {aiojobs_engine.__version__}: reinstall "
        "(pip install -e '.[test]'), and remove a stale aiojobs_engine.egg-info left by an older setuptools install"
    )


def test_the_command_line_prints_that_version() -> None:
    result = subprocess.run([sys.executable, "-m", "aiojobs_engine", "--version"], capture_output=True, text=True,
                            timeout=60)
    assert (result.returncode, result.stdout) == (0, f"aiojobs {aiojobs_engine.__version__}\n"), result.stderr


def test_the_changelog_has_an_unreleased_section_and_the_current_release() -> None:
    changelog = (ROOT / "CHANGELOG.md").read_text()
    releases = re.findall(r"^## \[([^\]]+)\]", changelog, re.MULTILINE)
    assert releases[0] == "Unreleased", releases
    assert releases[1] == aiojobs_engine.__version__, (
        f"the newest release in CHANGELOG.md is {releases[1]}, the package is {aiojobs_engine.__version__}"
    )
    assert re.search(rf"^## \[{re.escape(releases[1])}\] - \d{{4}}-\d{{2}}-\d{{2}}$", changelog, re.MULTILINE), (
        "the newest release's heading has no date (## [X.Y.Z] - YYYY-MM-DD)"
    )


def test_the_licence_is_the_one_pyproject_declares() -> None:
    assert PYPROJECT["project"]["license"] == "MIT"
    assert PYPROJECT["project"]["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n\nCopyright (c) 2026 the aiojobs_engine authors\n"), text[:100]
    assert "THE SOFTWARE IS PROVIDED \"AS IS\"" in text
    metadata = importlib.metadata.metadata("aiojobs_engine")
    assert metadata["License-Expression"] == "MIT"
