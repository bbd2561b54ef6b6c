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


def test_architecture_page_names_every_module():
    """docs/architecture.md names each module of the package, so that a module added without its
    sentence there fails here: a top-level module as ``raw.py``, a subpackage's module as
    ``format/lmdb.py`` or as ``lmdb.py`` in a paragraph that names ``format/``."""
    page = (REPO_ROOT / "docs" / "architecture.md").read_text()
    blocks = re.split(r"\n- |\n\n", page)
    package = REPO_ROOT / "src" / "dataflow"
    missing = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package)
        if len(rel.parts) == 1:
            named = f"`{rel.name}`" in page
        else:
            sub = "/".join(rel.parts[:-1]) + "/"
            named = f"`{sub}`" in page and (
                rel.name == "__init__.py"
                or f"`{sub}{rel.name}`" in page
                or any(f"`{sub}`" in b and f"`{rel.name}`" in b for b in blocks)
            )
        if not named:
            missing.append(str(rel))
    assert not missing, f"docs/architecture.md does not name: {missing}"
