"""The ``fastjac`` command, run as a user would: in a subprocess, through
``python -m fastjac`` (and the console script when it is on PATH)."""
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# The 11 checks of the reference notebook, as the demo names them.
NOTEBOOK_CHECKS = [
    "sigmoid  da/dz", "tanh  da/dz", "softmax  da/dz", "cross-entropy  dJ/da",
    "softmax + CE  dJ/dz", "dense, 1 sample  dJ/dW", "dense, 1 sample  dJ/dx",
    "dense, 1 sample  dJ/db", "dense, batch  dJ/dW", "dense, batch  dJ/dX",
    "dense, batch  dJ/db",
]


def run(*args, cwd=None, timeout=120):
    env = dict(os.environ, PYTHONWARNINGS="error::DeprecationWarning:fastjac")
    return subprocess.run([sys.executable, "-m", "fastjac", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=timeout, env=env)


def assert_one_line_error(proc, *needles):
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "error:" in lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture(scope="module")
def user_module(tmp_path_factory):
    """A user's file with a correct, a wrong and a crashing derivative."""
    d = tmp_path_factory.mktemp("user")
    (d / "layer.py").write_text(textwrap.dedent("""
        import numpy as np

        def f(x):
            return 2 * np.sin(x)

        def df(x):
            return np.diag(2 * np.cos(x))

        def df_wrong(x):
            return np.diag(np.cos(x))

        def boom(x):
            raise RuntimeError("kaboom")

        def loss(W):
            return np.sum(W ** 3)

        def dloss(W):
            return 3 * W ** 2

        not_callable = 3
    """))
    return d


@pytest.fixture(scope="module")
def demo():
    return run("demo", "--at-scale", "30,100")


def test_demo_reports_every_notebook_check_and_passes(demo):
    assert demo.returncode == 0, demo.stdout + demo.stderr
    lines = demo.stdout.splitlines()
    for name in NOTEBOOK_CHECKS:
        row = [ln for ln in lines if name in ln]
        assert len(row) == 1, name
        # Every notebook derivative is right: the verdict after the shape is pass
        # (or noise: a mismatch within finite-difference noise, which passes).
        assert re.search(r"\)\s+(pass|noise)\s+\d\.\d+e[+-]\d+", row[0]), row[0]
    assert "11 of 11 checks pass." in demo.stdout
    assert "At scale" in demo.stdout


def test_demo_is_reproducible_except_timings(demo):
    again = run("demo", "--at-scale", "0")

    def verdicts(out):  # name, shape, verdict and error norm: everything but times
        return [re.match(r".*?\d\.\d+e[+-]\d+", ln).group(0)
                for ln in out.splitlines() if any(n in ln for n in NOTEBOOK_CHECKS)]

    assert verdicts(again.stdout) == verdicts(demo.stdout)


def test_demo_full_prints_matrices():
    proc = run("demo", "--full", "--at-scale", "0")
    assert proc.returncode == 0
    assert proc.stdout.count("analytic:") == 11
    assert proc.stdout.count("numeric (fastjac):") == 11


def test_check_passes_and_fails(user_module):
    ok = run("check", "layer.py:f", "--shape", "3", "--expected", "layer.py:df", cwd=user_module)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = run("check", "layer:f", "--shape", "3", "--expected", "layer:df_wrong", cwd=user_module)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "fail" in bad.stdout.lower()


def test_check_matrix_input_given_values_and_float32(user_module):
    proc = run("check", "layer.py:loss", "--x", "1,2,3,4,5,6", "--shape", "2,3",
               "--expected", "layer.py:dloss", "--dtype", "float32", "--order", "4",
               cwd=user_module)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "shape (2, 3), dtype float32" in proc.stdout


def test_check_without_expected_prints_jacobian_and_noise(user_module):
    proc = run("check", "layer.py:f", "--x", "0,1", cwd=user_module)
    assert proc.returncode == 0, proc.stderr
    assert "numeric Jacobian, shape (2, 2)" in proc.stdout
    assert "noise estimate" in proc.stdout
    assert "2." in proc.stdout  # d(2 sin x)/dx at 0 is 2


def test_check_function_that_raises_is_exit_1_without_traceback(user_module):
    proc = run("check", "layer.py:boom", "--shape", "3", cwd=user_module)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "RuntimeError: kaboom" in proc.stderr


@pytest.mark.parametrize("args, needle", [
    (["nosuchmodule:f", "--shape", "3"], "cannot import module 'nosuchmodule'"),
    (["missing.py:f", "--shape", "3"], "no such file"),
    (["layer.py:nope", "--shape", "3"], "has no attribute 'nope'"),
    (["layer.py:not_callable", "--shape", "3"], "not callable"),
    (["layer.py", "--shape", "3"], "MODULE:FUNC"),
    (["layer.py:f", "--shape", "3,a"], "`--shape`"),
    (["layer.py:f", "--shape", "3,x"], "`--shape`"),   # once parsed as (3,)
    (["layer.py:f", "--shape", "3,,4"], "`--shape`"),
    (["layer.py:f", "--shape", "0"], "`--shape`"),
    (["layer.py:f", "--shape", "3", "--dtype", "int8"], "`--dtype` must be one of"),
    (["layer.py:f", "--shape", "3", "--method", "centre"], "`--method` must be one of"),
    (["layer.py:f", "--shape", "3", "--order", "3"], "`--order`"),
    (["layer.py:f", "--x", "1,2", "--shape", "3"], "`--x` has 2 values"),
    (["layer.py:f", "--x", "1,b"], "`--x`"),
    (["layer.py:f"], "`--shape`"),
    (["layer.py:f", "--shape", "3", "--order", "four"], "invalid int value"),
    (["layer.py:f", "--shape", "3", "--expected", "layer.py:nope"], "`--expected`"),
])
def test_check_bad_arguments_are_one_line_exit_2(user_module, args, needle):
    assert_one_line_error(run("check", *args, cwd=user_module), needle)


def test_bench_bad_arguments_are_one_line_exit_2(tmp_path):
    assert_one_line_error(run("bench", "--sizes", "10,x"), "`--sizes`")
    assert_one_line_error(run("bench", "--workloads", "nope"), "`--workloads`")
    assert_one_line_error(run("bench", "--from-json", str(tmp_path / "none.json")), "cannot read")
    (tmp_path / "bad.json").write_text("{\"x\": 1}")
    assert_one_line_error(run("bench", "--from-json", str(tmp_path / "bad.json")), "benchmarks")
    assert_one_line_error(run("bench", "--plot", str(tmp_path / "no" / "dir.png")), "`--plot`")
    assert_one_line_error(run("nosuchcommand"), "invalid choice")


def test_bench_quick_writes_json_and_png(tmp_path):
    out_json, out_png = tmp_path / "b.json", tmp_path / "b.png"
    proc = run("bench", "--quick", "--sizes", "10,30", "--json", str(out_json),
               "--plot", str(out_png))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out_json.read_text())
    impls = {b["extra_info"]["impl"] for b in data["benchmarks"]}
    assert {"reference-loop", "fastjac"} <= impls
    groups = {b["group"] for b in data["benchmarks"]}
    assert "engine|softmax-ce|n=30" in groups
    assert all(b["stats"]["median"] > 0 and b["extra_info"]["correct"] for b in data["benchmarks"])
    assert out_png.read_bytes()[:8] == PNG_SIGNATURE
    assert out_png.stat().st_size > 1000
    assert "softmax-ce" in proc.stdout and "speedup" in proc.stdout
    # Our own JSON round-trips through --from-json to the same table.
    again = run("bench", "--from-json", str(out_json))
    assert again.returncode == 0
    assert again.stdout.splitlines()[1:] == proc.stdout.splitlines()[1:len(again.stdout.splitlines())]


def test_bench_from_pytest_benchmark_json(tmp_path):
    out_png = tmp_path / "from.png"
    proc = run("bench", "--from-json", str(DATA / "pytest-benchmark-tiny.json"),
               "--plot", str(out_png), "--markdown")
    assert proc.returncode == 0, proc.stderr
    rows = [ln for ln in proc.stdout.splitlines() if ln.startswith("| tanh")]
    assert len(rows) == 2  # engine|tanh|n=3 and n=6, impl from extra_info
    assert "| startup |" in proc.stdout  # a generic group is listed, not plotted
    assert "reference-loop" in proc.stdout and "fastjac speedup" in proc.stdout
    assert out_png.read_bytes()[:8] == PNG_SIGNATURE


def test_help_of_every_subcommand_shows_examples():
    for sub in ([], ["demo"], ["check"], ["bench"]):
        proc = run(*sub, "--help")
        assert proc.returncode == 0
        assert "examples:" in proc.stdout


def _console_script():
    beside = Path(sys.executable).parent / "fastjac"  # a venv's bin/, even if not on PATH
    return shutil.which("fastjac") or (str(beside) if beside.exists() else None)


@pytest.mark.skipif(_console_script() is None, reason="console script not installed")
def test_console_script():
    proc = subprocess.run([_console_script(), "--version"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0
    assert proc.stdout.startswith("fastjac ")


def test_cli_import_is_light():
    code = ("import sys, fastjac.cli; "
            "print(sorted(m for m in ('numba', 'scipy', 'matplotlib', 'tqdm') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stdout.strip() == "[]"
