"""The README's code examples pass ``mypy --strict`` against the installed package.

Every ```` ```python ```` block of README.md is a whole module and is type-checked as one,
unless the line just above its fence is ``<!-- fragment -->``: fragments show a few calls
out of context (``await`` at top level, names defined elsewhere in the README) and are
skipped. Mark a block a fragment only when it cannot stand alone; a complete example that
drifts from the API fails here, with the README line that is wrong.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FRAGMENT = "<!-- fragment -->"


@dataclass(frozen=True)
class Block:
    first_line: int  # README line number of the block's first line of code
    code: str
    fragment: bool


def python_blocks(readme: str) -> list[Block]:
    lines = readme.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        if lines[i].strip() == "```python":
            end = lines.index("```", i + 1)
            fragment = i > 0 and lines[i - 1].strip() == FRAGMENT
            blocks.append(Block(i + 2, "\n".join(lines[i + 1:end]) + "\n", fragment))
            i = end
        i += 1
    return blocks


def test_blocks_are_found_and_markers_mark_python_blocks() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = python_blocks(readme)
    assert len(blocks) >= 10, len(blocks)
    # A marker anywhere else (before a sh block, or adrift) is a mistake: say where.
    lines = readme.splitlines()
    for number, line in enumerate(lines, 1):
        if line.strip() == FRAGMENT:
            assert lines[number].strip() == "```python", f"README.md:{number}: {FRAGMENT} not just above a python block"
    # The first example a reader sees is a whole program.
    assert not blocks[0].fragment


def test_python_blocks_parser() -> None:
    text = "intro\n```python\nx = 1\n```\n<!-- fragment -->\n```python\nawait f()\n```\n```sh\nls\n```\n"
    assert python_blocks(text) == [Block(3, "x = 1\n", False), Block(7, "await f()\n", True)]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_complete_readme_examples_pass_mypy_strict(tmp_path: Path) -> None:
    complete = [b for b in python_blocks((ROOT / "README.md").read_text()) if not b.fragment]
    assert complete
    files = {}
    for n, block in enumerate(complete):
        path = tmp_path / f"readme_example_{n}.py"
        path.write_text(block.code)
        files[path.name] = block
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--no-error-summary", "--show-error-codes",
         *files],
        cwd=tmp_path, capture_output=True, text=True, timeout=280)
    assert result.returncode in (0, 1), result.stdout + result.stderr

    def at_readme_line(match: re.Match[str]) -> str:
        return f"README.md:{files[match[1]].first_line + int(match[2]) - 1}:"

    report = re.sub(r"^(readme_example_\d+\.py):(\d+):", at_readme_line, result.stdout, flags=re.MULTILINE)
    assert result.returncode == 0, report
