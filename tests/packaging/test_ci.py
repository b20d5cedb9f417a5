"""CI (.ci/run) runs the README's test command, then the release check, then other Pythons."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CI_RUN = (ROOT / ".ci" / "run").read_text()


def test_ci_runs_the_readme_command_then_the_release_check_then_other_pythons() -> None:
    readme_command = CI_RUN.index('bash -euo pipefail -c "$command"')
    release_check = CI_RUN.index(".venv/bin/python .ci/release-check")
    other_pythons = CI_RUN.index("for version in 3.12 3.13; do")
    assert readme_command < release_check < other_pythons
    assert os.access(ROOT / ".ci" / "release-check", os.X_OK)


def test_ci_finds_the_python_running_this_test() -> None:
    """The interpreter lookup .ci/run uses finds this very Python's version (pyenv or not)."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    function = CI_RUN[CI_RUN.index("find_python() {"):CI_RUN.index("\n}\n", CI_RUN.index("find_python() {")) + 3]
    result = subprocess.run(["bash", "-c", f'{function}\n"$(find_python {version})" -c "import sys; '
                             'print(sys.version_info[:2])"'], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{sys.version_info[:2]}\n"
