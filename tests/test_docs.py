"""Every ```python block in README.md and docs/*.md runs, so documentation cannot rot.

Blocks of one file run in order in one namespace (later blocks may use earlier names). A block whose
first line is ``# not run`` is skipped (for fragments such as "before/after" import snippets).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from flows import REPO_ROOT

DOC_FILES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def python_blocks(path: Path) -> list[str]:
    return [b for b in BLOCK.findall(path.read_text()) if not b.startswith("# not run")]


def test_docs_have_examples():
    assert python_blocks(REPO_ROOT / "README.md"), "README.md must show a runnable example"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("path", DOC_FILES, ids=lambda p: p.name)
def test_doc_examples_run(path, capsys):
    namespace: dict = {"__name__": f"doc_{path.stem}"}
    for i, block in enumerate(python_blocks(path)):
        code = compile(block, f"{path.name}[block {i}]", "exec")
        exec(code, namespace)
