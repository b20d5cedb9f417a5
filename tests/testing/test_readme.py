"""The README's "Testing your jobs" project passes as written, in a fresh directory.

The section's code blocks that open with a ``# path`` comment are the project's files; the
test writes them out, runs pytest on them in a subprocess with this environment's Python
(so with aiojobs_engine, pytest and pytest-asyncio installed, as the README asks), and
expects every test to pass without a warning. A second run drops the ``asyncio_mode`` line,
as a project in pytest-asyncio's strict mode would have it: the plugin marks the tests.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def readme_project() -> dict[str, str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Testing your jobs", 1)[1].split("\n### ", 1)[0]
    files = {}
    for block in re.findall(r"^```[a-z]+\n(.*?)^```", section, re.MULTILINE | re.DOTALL):
        first, _, _ = block.partition("\n")
        path = re.fullmatch(r"# ([\w./]+\.(?:py|toml))", first.strip())
        if path:
            files[path.group(1)] = block
    return files


def run_pytest(project: Path, files: dict[str, str]) -> subprocess.CompletedProcess[str]:
    for name, text in files.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "AIOJOBS_"))}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA"], cwd=project,
                          env=env, capture_output=True, text=True, timeout=120)


def test_the_readme_testing_example_passes_in_a_fresh_project(tmp_path: Path) -> None:
    files = readme_project()
    assert set(files) == {"myapp/jobs.py", "pyproject.toml", "tests/test_signup.py"}, files
    done = run_pytest(tmp_path, files)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    tests = re.findall(r"^async def test_", files["tests/test_signup.py"], re.MULTILINE)
    assert len(tests) >= 2 and re.search(rf"\b{len(tests)} passed in ", output), output
    assert "warning" not in output.lower(), output
    assert not (tmp_path / "aiojobs.sqlite3").exists()  # the application's own database was never opened


def test_in_strict_mode_the_plugin_marks_the_tests_that_use_its_fixtures(tmp_path: Path) -> None:
    files = readme_project()
    config = files["pyproject.toml"]
    files["pyproject.toml"] = re.sub(r"^asyncio_mode = .*\n", "", config, flags=re.MULTILINE)
    assert files["pyproject.toml"] != config
    # The control: an async test of the project's own, without the fixtures or a marker,
    # is not run by pytest-asyncio in strict mode; the README's tests are.
    files["tests/test_signup.py"] += "\n\nasync def test_of_the_projects_own():\n    pass\n"
    done = run_pytest(tmp_path, files)
    output = done.stdout + done.stderr
    passed = set(re.findall(r"^PASSED tests/test_signup.py::(\w+)", done.stdout, re.MULTILINE))
    assert passed == {"test_signup_sends_a_welcome", "test_the_welcome_itself"}, output
    assert done.returncode != 0 and "test_of_the_projects_own" in output, output
