"""Importing an optional module without its extra says which extra to install.

Each case runs in a fresh interpreter where the library is made unimportable as an
uninstalled one is: a finder placed first on ``sys.meta_path`` answers its top-level name
with the ``ModuleNotFoundError`` the import system raises for a package that is not there
(``No module named 'x'``, ``name='x'``). The modules this test session imported play no part.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import importlib, json, sys

class NotInstalled:
    hidden = set(sys.argv[2].split(","))

    def find_spec(self, name, path=None, target=None):
        if name in self.hidden:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NotInstalled())
try:
    module = importlib.import_module(sys.argv[1])
except ImportError as exc:
    print(json.dumps({"types": [c.__name__ for c in type(exc).__mro__], "name": exc.name,
                      "message": str(exc), "extra": getattr(exc, "extra", None)}))
else:
    print(json.dumps({"imported": sorted(n for n in vars(module) if not n.startswith("_"))}))
"""


def probe(module: str, hidden: list[str]) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", PROBE, module, ",".join(hidden)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=True)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def extras() -> dict[str, list[str]]:
    """pyproject's extras: name -> the distribution names they install (normalised)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {extra: [re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0].lower().replace("_", "-") for req in reqs]
            for extra, reqs in project["optional-dependencies"].items()}


@pytest.mark.parametrize(("module", "hidden", "extra", "distribution"), [
    ("aiojobs_engine.contrib.prometheus", "prometheus_client", "prometheus", "prometheus-client"),
    ("aiojobs_engine.contrib.opentelemetry", "opentelemetry", "otel", "opentelemetry-api"),
    ("aiojobs_engine.contrib.aiohttp", "aiohttp", "aiohttp", "aiohttp"),
    ("aiojobs_engine.dashboard", "starlette", "dashboard", "starlette"),
    ("aiojobs_engine.dashboard", "jinja2", "dashboard", "jinja2"),
])
def test_a_missing_library_names_the_extra_to_install(module: str, hidden: str, extra: str,
                                                      distribution: str) -> None:
    found = probe(module, [hidden])
    assert found.get("types", [None])[:4] == ["MissingExtraError", "AiojobsError", "ModuleNotFoundError",
                                              "ImportError"], found
    assert found["name"] == hidden  # what tools (and `except ModuleNotFoundError as e: e.name`) read
    assert found["extra"] == extra
    assert f'pip install "aiojobs_engine[{extra}]"' in found["message"], found["message"]
    assert module in found["message"] and hidden in found["message"]
    # The extra named is one pyproject declares, and it installs the library that was missing.
    assert distribution in extras().get(extra, []), f"pyproject's extra {extra!r} does not install {distribution}"


def test_an_import_error_of_anything_else_is_left_as_it_was() -> None:
    # A module of the package itself failing to import is a bug, not a missing extra.
    found = probe("aiojobs_engine.dashboard", ["aiojobs_engine.dashboard._views"])
    assert found["types"][0] == "ModuleNotFoundError" and found["extra"] is None, found
    assert found["name"] == "aiojobs_engine.dashboard._views" and "pip install" not in found["message"]


def test_the_fastapi_helper_needs_no_framework_at_import() -> None:
    # engine_lifespan speaks the lifespan protocol only, so it imports (and serves any
    # Starlette-style app) without FastAPI: there is no extra to ask for.
    found = probe("aiojobs_engine.contrib.fastapi", ["fastapi", "starlette"])
    assert "engine_lifespan" in found.get("imported", []), found


def test_the_engine_itself_needs_no_extra() -> None:
    found = probe("aiojobs_engine", ["prometheus_client", "opentelemetry", "aiohttp", "fastapi", "starlette",
                                     "jinja2"])
    assert "Engine" in found.get("imported", []), found
