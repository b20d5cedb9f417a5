"""Types reach users: a user's file outside this repository, type-checked against the package
as the README installs it (this venv is that editable install), gets the job handles' types.

mypy (and pyright, where node is installed) run from ``tmp_path``, so nothing but the
installed package can answer ``import aiojobs_engine``: before hatchling, setuptools' editable
install was an import hook that neither checker follows (``import-not-found`` and "untyped
decorator" under ``--strict``). .ci/release-check checks the same files against a built wheel.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.packaging._usercode import BAD_LINES, write

BIN = Path(sys.executable).parent


def _checker_env() -> dict[str, str]:
    # Nothing from this repository on the path: the installed package must answer.
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MYPYPATH")}


@pytest.fixture(scope="module")
def user_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write(tmp_path_factory.mktemp("user_project"))


@pytest.fixture(scope="module")
def mypy_output(user_files: tuple[Path, Path]) -> str:
    good, bad = user_files
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--no-error-summary",
         "--show-error-codes", good.name, bad.name],
        cwd=good.parent, env=_checker_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode in (0, 1), result.stdout + result.stderr  # 2: mypy itself failed
    return result.stdout


@pytest.mark.slow
def test_mypy_strict_accepts_correct_user_code(mypy_output: str) -> None:
    good_errors = [line for line in mypy_output.splitlines() if line.startswith("good.py")]
    assert good_errors == [], "\n".join(good_errors)


@pytest.mark.slow
def test_mypy_strict_reports_a_wrong_argument_to_enqueue(mypy_output: str) -> None:
    bad_errors = [line for line in mypy_output.splitlines() if line.startswith("bad.py")]
    assert len(bad_errors) == len(BAD_LINES), mypy_output
    for error, line in zip(bad_errors, BAD_LINES, strict=True):
        assert error.startswith(f"bad.py:{line}: error: Argument 1 "), error
        assert 'incompatible type "str"; expected "int"  [arg-type]' in error, error


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("node") is None, reason="pyright runs on node, which is not installed")
@pytest.mark.timeout(300)
def test_pyright_strict_sees_the_same(user_files: tuple[Path, Path]) -> None:
    good, bad = user_files
    (good.parent / "pyrightconfig.json").write_text(json.dumps({"typeCheckingMode": "strict"}))
    result = subprocess.run(
        [str(BIN / "pyright"), "--outputjson", "--pythonpath", sys.executable, good.name, bad.name],
        cwd=good.parent, env=_checker_env(), capture_output=True, text=True, timeout=280)
    assert result.returncode in (0, 1), result.stdout + result.stderr
    report = json.loads(result.stdout)
    errors = [(Path(d["file"]).name, d["range"]["start"]["line"] + 1, d.get("rule", ""), d["message"])
              for d in report["generalDiagnostics"] if d["severity"] == "error"]
    assert [e[:3] for e in errors] == [("bad.py", line, "reportArgumentType") for line in BAD_LINES], errors
