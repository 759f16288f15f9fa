"""The documentation runs: every ```python block of README.md and docs/*.md, and
every doctest of the package.

Blocks of one file run in order, in one namespace (a file is a tutorial).  A
block preceded by ``<!-- skip-test -->`` is skipped (reserved for blocks that
need a cluster; there are none today).  Output is captured so a block may print.
"""
import doctest
import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import fastjac

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
_BLOCK = re.compile(r"(<!--\s*skip-test\s*-->\s*\n)?```python\n(.*?)```", re.DOTALL)


def blocks_of(path):
    text = path.read_text(encoding="utf-8")
    blocks = []
    for m in _BLOCK.finditer(text):
        line = text.count("\n", 0, m.start(2)) + 1
        blocks.append((line, m.group(2), m.group(1) is not None))
    return blocks


def readme_blocks():
    return blocks_of(README)


def run_blocks(path):
    namespace = {"__name__": path.stem}
    for line, code, skip in blocks_of(path):
        if skip:
            continue
        try:
            exec(compile(code, f"{path.name}:{line}", "exec"), namespace)
        except Exception as exc:  # name the block, keep the traceback
            pytest.fail(f"{path.name} block at line {line} raised {type(exc).__name__}: {exc}")


@pytest.mark.parametrize("path", DOCS, ids=[p.name for p in DOCS])
def test_docs_python_blocks_run(path, capsys):
    run_blocks(path)


def _modules():
    names = ["fastjac"]
    for info in pkgutil.walk_packages(fastjac.__path__, "fastjac."):
        names.append(info.name)
    return sorted(n for n in names if not n.endswith("__main__"))


@pytest.mark.parametrize("name", _modules())
def test_doctests(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
                             verbose=False)
    assert result.failed == 0, f"{result.failed} doctest(s) of {name} failed (run with -s)"


def test_readme_has_python_blocks():
    assert len(readme_blocks()) >= 8


def test_readme_two_commands_come_first():
    text = README.read_text(encoding="utf-8")
    first_block = text.split("```")[1]
    assert first_block.strip().splitlines() == [
        'pip install . && fastjac demo', 'pip install ".[test]" && pytest']


def test_readme_bench_markers_present():
    text = README.read_text(encoding="utf-8")
    start, end = text.find("<!-- bench-table:start -->"), text.find("<!-- bench-table:end -->")
    assert 0 < start < end
    assert "| workload |" in text[start:end]


def test_readme_python_blocks_run(capsys):
    run_blocks(README)
