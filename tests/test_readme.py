"""Every ```python block of README.md runs, in order, in one namespace.

A block preceded by ``<!-- skip-test -->`` is skipped (reserved for blocks that
need a cluster; there are none today).  Output is captured so a block may print.
"""
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
_BLOCK = re.compile(r"(<!--\s*skip-test\s*-->\s*\n)?```python\n(.*?)```", re.DOTALL)


def readme_blocks():
    text = README.read_text(encoding="utf-8")
    blocks = []
    for m in _BLOCK.finditer(text):
        line = text.count("\n", 0, m.start(2)) + 1
        blocks.append((line, m.group(2), m.group(1) is not None))
    return blocks


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
    namespace = {"__name__": "readme"}
    for line, code, skip in readme_blocks():
        if skip:
            continue
        try:
            exec(compile(code, f"README.md:{line}", "exec"), namespace)
        except Exception as exc:  # name the block, keep the traceback
            pytest.fail(f"README block at line {line} raised {type(exc).__name__}: {exc}")
