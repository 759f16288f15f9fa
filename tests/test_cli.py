"""The ``fastjac`` command, run as a user would: in a subprocess, through
``python -m fastjac`` (and the console script when it is on PATH)."""
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
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

        A = np.arange(6.0).reshape(2, 3)

        def lin(x):                 # R^3 -> R^2: J = A, shape (2, 3)
            return A @ x

        def dlin(x):
            return A

        def dlin_transposed(x):     # the classic layout bug: (3, 2)
            return A.T

        def dnone(x):
            return None

        def bad_value(x):           # a ValueError from the user's code is not a usage error
            raise ValueError("bad value in the user's code")

        def boom_off_x(x):          # raises only at a perturbed point
            if np.any(x != np.array([1.0, 2.0])):
                raise RuntimeError("kaboom away from x")
            return np.sin(x)

        def dboom(x):
            raise RuntimeError("kaboom in the expected")

        def big(x):                 # enough output to overflow a pipe's buffer
            return np.outer(np.sin(x), x)

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
    # The user's own ValueError is f raising (1), not the library rejecting an argument (2).
    (["layer.py:bad_value", "--shape", "2"], "f raised ValueError: bad value in the user's code"),
    (["layer.py:bad_value", "--shape", "2", "--expected", "layer.py:dlin"],
     "f raised ValueError: bad value"),
    # Raised at a perturbed point, inside the engine: still f, and the point is named.
    (["layer.py:boom_off_x", "--x", "1,2"], "f raised RuntimeError: kaboom away from x (with x"),
    (["layer.py:f", "--x", "1,2", "--expected", "layer.py:dboom"],
     "--expected raised RuntimeError: kaboom in the expected"),
])
def test_check_user_code_raising_is_exit_1(user_module, args, needle):
    proc = run("check", *args, cwd=user_module)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], proc.stderr


def test_check_transposed_expected_is_the_librarys_usage_error(user_module):
    proc = run("check", "layer.py:lin", "--shape", "3", "--expected", "layer.py:dlin_transposed",
               cwd=user_module)
    # check_jacobian's own message; no silent reshape into a "FAIL ... 4 bug" report.
    assert_one_line_error(proc, "`--expected` must have the shape",
                          "got (3, 2). Same number of entries: a transposed or reordered layout?")
    assert "FAIL" not in proc.stdout and "bug" not in proc.stdout
    ok = run("check", "layer.py:lin", "--shape", "3", "--expected", "layer.py:dlin",
             cwd=user_module)
    assert ok.returncode == 0, ok.stdout + ok.stderr


@pytest.mark.parametrize("x", ["-1,1,2", "-1, 1, 2", "-1e0,1,2"])
def test_check_accepts_values_starting_with_a_dash(user_module, x):
    proc = run("check", "layer.py:f", "--x", x, cwd=user_module)
    assert proc.returncode == 0, proc.stderr
    assert "1.080605" in proc.stdout  # d(2 sin x)/dx at x = -1 is 2 cos(1) = 1.0806046


def _pipe_closed_early(args, cwd):
    """Run with stdout a pipe whose reader has gone (as `| head -c1` leaves it)."""
    env = dict(os.environ, PYTHONWARNINGS="error::DeprecationWarning:fastjac")
    proc = subprocess.Popen([sys.executable, "-m", "fastjac", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=cwd, env=env)
    proc.stdout.close()  # before the child's first write: it imports numpy first
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err.decode()


def test_check_into_a_closed_pipe_exits_quietly(user_module):
    code, err = _pipe_closed_early(["check", "layer.py:big", "--shape", "40"], user_module)
    assert err == ""  # no "error: BrokenPipeError", no "Exception ignored ..."
    assert code == 141  # 128 + SIGPIPE, what a shell reports for a tool killed by SIGPIPE


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("head") is None,
                    reason="needs bash and head")
def test_check_piped_into_head_prints_no_error(user_module):
    cmd = (f"{shlex.quote(sys.executable)} -m fastjac check layer.py:f --shape 40 "
           "--expected layer.py:df | head -c1; exit ${PIPESTATUS[0]}")
    proc = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, cwd=user_module,
                          timeout=120)
    assert proc.stdout == "f"  # "fastjac check ..."
    assert proc.stderr == ""
    # 141 when the report is written after head has gone, 0 if it fitted in the pipe first.
    assert proc.returncode in (0, 141)


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
    # Arguments the library's validation rejects are usage errors too.
    (["layer.py:f", "--shape", "3", "--expected", "layer.py:df", "--rtol=-1"], "`--rtol` must be"),
    (["layer.py:f", "--shape", "3", "--expected", "layer.py:df", "--rtol", "-1"], "`--rtol` must be"),
    (["layer.py:f", "--shape", "3", "--expected", "layer.py:df", "--atol", "nan"], "`--atol` must be"),
    (["layer.py:f", "--shape", "3", "--rtol", "1e-3"], "give `--expected`"),
    (["layer.py:f", "--shape", "3", "--expected", "layer.py:dnone"], "`--expected` must be"),
    (["layer.py:f", "--x", "-1,x"], "`--x`"),
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


@pytest.fixture(scope="module")
def quick_bench(tmp_path_factory):
    """One quick `fastjac bench` run with --json and --plot, shared by the tests below."""
    d = tmp_path_factory.mktemp("bench")
    out_json, out_png = d / "quick.json", d / "quick.png"
    proc = run("bench", "--quick", "--sizes", "10,30", "--json", str(out_json),
               "--plot", str(out_png))
    return proc, out_json, out_png


def test_bench_quick_writes_json_and_png(quick_bench):
    proc, out_json, out_png = quick_bench
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out_json.read_text())
    impls = {b["extra_info"]["impl"] for b in data["benchmarks"]}
    assert {"reference-loop", "fastjac"} <= impls
    groups = {b["group"] for b in data["benchmarks"]}
    assert "engine|softmax-ce|n=30" in groups
    assert all(b["stats"]["median"] > 0 and b["extra_info"]["correct"] for b in data["benchmarks"])
    # Named as benchmarks/bench_engine.py names its tests, so pytest runs pair with it.
    names = {b["fullname"] for b in data["benchmarks"]}
    assert "benchmarks/bench_engine.py::test_engine[fastjac-softmax-ce-30]" in names
    assert out_png.read_bytes()[:8] == PNG_SIGNATURE
    assert out_png.stat().st_size > 1000
    assert "softmax-ce" in proc.stdout and "speedup" in proc.stdout
    # Our own JSON round-trips through --from-json to the same table.
    again = run("bench", "--from-json", str(out_json))
    assert again.returncode == 0
    assert again.stdout.splitlines()[1:] == proc.stdout.splitlines()[1:len(again.stdout.splitlines())]


def pytest_benchmark_compare(*paths, cwd=None):
    """`pytest-benchmark compare PATHS`, the way a user runs it."""
    return subprocess.run([sys.executable, "-m", "pytest_benchmark", "compare", *map(str, paths)],
                          capture_output=True, text=True, cwd=cwd, timeout=120)


def assert_compare_shows(proc, data):
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "Failed to load" not in out, out
    for b in data["benchmarks"]:
        assert b["name"] in proc.stdout, b["name"]


def test_bench_json_loads_in_pytest_benchmark_compare(quick_bench):
    _, out_json, _ = quick_bench
    assert_compare_shows(pytest_benchmark_compare(out_json), json.loads(out_json.read_text()))


PAIRED_SUITE = '''
import pytest
from fastjac._workloads import IMPLEMENTATIONS, case


@pytest.mark.parametrize("n", [10])
@pytest.mark.parametrize("workload", ["tanh"])
@pytest.mark.parametrize("impl", ["reference-loop", "fastjac"])
def test_engine(benchmark, impl, workload, n):
    benchmark.group = f"engine|{workload}|n={n}"
    benchmark(IMPLEMENTATIONS[impl](case(workload, n)))
'''


def test_bench_json_pairs_with_pytest_benchmark_compare(tmp_path):
    """`pytest --benchmark-compare=out.json` shows each fastjac bench row beside the new run."""
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "bench_engine.py").write_text(PAIRED_SUITE)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    made = run("bench", "--quick", "--sizes", "10", "--workloads", "tanh", "--json", "cli.json",
               cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:fastjac", "-p", "no:cacheprovider", "-q",
         "-o", "python_files=bench_*.py", "benchmarks/bench_engine.py",
         "--benchmark-compare=cli.json", "--benchmark-max-time=0.005",
         "--benchmark-min-rounds=1", "--benchmark-warmup=off"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for impl in ("reference-loop", "fastjac"):
        rows = [ln for ln in proc.stdout.splitlines() if f"test_engine[{impl}-tanh-10]" in ln]
        assert any("(NOW)" in ln for ln in rows), proc.stdout
        assert any("(cli)" in ln for ln in rows), proc.stdout  # the row read from cli.json


RESULTS = Path(__file__).parent.parent / "benchmarks" / "results"
RESULT_FILES = sorted(RESULTS.glob("*.json"))


def test_committed_results_are_the_six_suites():
    assert [p.stem for p in RESULT_FILES] == sorted(
        ["engine", "chunking", "nn", "check", "scale", "monitor"])


@pytest.mark.parametrize("path", RESULT_FILES, ids=[p.stem for p in RESULT_FILES])
def test_committed_results_load_with_pytest_benchmarks_loader(path, tmp_path):
    from pytest_benchmark.logger import Logger
    from pytest_benchmark.storage.file import FileStorage

    # The loader warns (an error here: filterwarnings = error) on a file it cannot read.
    storage = FileStorage(tmp_path, logger=Logger(Logger.QUIET))
    loaded = list(storage.load_benchmarks(str(path)))
    data = json.loads(path.read_text())
    assert len(loaded) == len(data["benchmarks"]) > 0
    assert all(b["median"] > 0 and "fullname" in b for b in loaded)
    assert not any("data" in b["stats"] for b in data["benchmarks"])  # no per-round data


def test_committed_results_show_in_pytest_benchmark_compare():
    proc = pytest_benchmark_compare(*RESULT_FILES)
    for path in RESULT_FILES:
        assert_compare_shows(proc, json.loads(path.read_text()))


def test_docs_and_readme_tables_are_generated_from_committed_results():
    root = RESULTS.parent.parent
    proc = subprocess.run([sys.executable, str(root / "benchmarks" / "report.py"), str(RESULTS),
                           "--check", str(root / "docs" / "benchmarks.md"), str(root / "README.md")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr  # else: report.py benchmarks/results --write ...


def _stats(median):
    from pytest_benchmark.stats import Stats

    stats = Stats()
    for t in (0.9 * median, median, 1.3 * median):
        stats.update(t)
    return {**stats.as_dict(), "iterations": 1}


# A hand-written pytest-benchmark file: groups and names of every shape a user
# may have, each with its own median so the tests can find every entry.
ARBITRARY = [
    # group, name, params, extra_info, median
    ("mygroup", "test_numpy_sum", None, {}, 1.11e-3),       # two tests in one group
    ("mygroup", "test_python_sum", None, {}, 2.22e-3),
    ("sizes", "test_sized[a-1]", {"backend": "a", "n": 1}, {}, 3.33e-3),
    ("sizes", "test_sized[a-2]", {"backend": "a", "n": 2}, {}, 4.44e-3),
    ("sizes", "test_sized[b-2]", {"backend": "b", "n": 2}, {}, 5.55e-3),
    ("a|b|c", "test_pipes", None, {}, 6.66e-3),
    ("x|n=notanint", "test_odd_n", None, {}, 7.77e-3),
    ("Größe [ms] — weird", "test_unicode[é]", {"p": "é"}, {}, 8.88e-3),
    (None, "test_nogroup_one", None, {}, 9.99e-3),
    (None, "test_nogroup_two[x]", {"k": "x"}, {}, 1.234e-2),
    ("engine|tanh|n=3", "test_tanh[fastjac-3]", {"impl": "fastjac", "n": 3},
     {"impl": "fastjac"}, 2.345e-2),
]


def _arbitrary_file(path, entries):
    data = {"machine_info": {"cpu": {"brand_raw": "Test CPU"}}, "commit_info": {},
            "datetime": "2026-01-01T00:00:00+00:00", "version": "5.3.1",
            "benchmarks": [{"group": g, "name": name, "fullname": f"t.py::{name}", "params": params,
                            "param": None if params is None else name[name.find("[") + 1:-1],
                            "extra_info": extra, "options": {}, "stats": _stats(t)}
                           for g, name, params, extra, t in entries]}
    path.write_text(json.dumps(data, ensure_ascii=False))
    return data


def _fmt(seconds):
    from fastjac._bench import format_time

    return format_time(seconds)


@pytest.mark.parametrize("markdown", [False, True])
def test_bench_from_json_any_groups_and_names(tmp_path, markdown):
    path, png = tmp_path / "mine.json", tmp_path / "mine.png"
    data = _arbitrary_file(path, ARBITRARY)
    assert_compare_shows(pytest_benchmark_compare(path), data)  # a valid pytest-benchmark file
    proc = run("bench", "--from-json", str(path), "--plot", str(png),
               *(["--markdown"] if markdown else []))
    assert proc.returncode == 0, proc.stderr
    for *_, t in ARBITRARY:  # no entry dropped: every median is in the table
        assert _fmt(t) in proc.stdout, (_fmt(t), proc.stdout)
    # The two tests of one group are two columns of one row (named by the words
    # their names do not share), with a speedup.
    row = [ln for ln in proc.stdout.splitlines() if "mygroup" in ln]
    assert len(row) == 1 and _fmt(1.11e-3) in row[0] and _fmt(2.22e-3) in row[0]
    assert "python speedup" in proc.stdout and "0.5x" in row[0]
    assert png.read_bytes()[:8] == PNG_SIGNATURE


def test_bench_from_json_lists_entries_that_share_a_cell(tmp_path):
    """Two entries of one group with the same implementation: one line each, not one dropped."""
    entries = [("dup", "test_a[fastjac]", {"impl": "fastjac"}, {}, 1.5e-3),
               ("dup", "test_b[fastjac]", {"impl": "fastjac"}, {}, 3.0e-3),
               ("other", "test_c", None, {}, 4.5e-3)]
    path = tmp_path / "dup.json"
    _arbitrary_file(path, entries)
    proc = run("bench", "--from-json", str(path), "--plot", str(tmp_path / "dup.png"))
    assert proc.returncode == 0, proc.stderr
    for _, name, *_, t in entries:
        line = [ln for ln in proc.stdout.splitlines() if name in ln]
        assert len(line) == 1 and _fmt(t) in line[0], proc.stdout
    assert "2.00" in proc.stdout  # test_b against the fastest of its group


def test_bench_from_pytest_benchmark_json(tmp_path):
    out_png = tmp_path / "from.png"
    proc = run("bench", "--from-json", str(DATA / "pytest-benchmark-tiny.json"),
               "--plot", str(out_png), "--markdown")
    assert proc.returncode == 0, proc.stderr
    rows = [ln for ln in proc.stdout.splitlines() if ln.startswith("| tanh")]
    assert len(rows) == 2  # engine|tanh|n=3 and n=6, impl from extra_info
    assert "| startup |" in proc.stdout  # a group without n is a row too
    assert "reference-loop" in proc.stdout and "fastjac speedup" in proc.stdout
    assert out_png.read_bytes()[:8] == PNG_SIGNATURE


def _run_tiny_suite(tmp_path):
    """tests/data/bench_tiny.py run for real, as its docstring says."""
    shutil.copy(DATA / "bench_tiny.py", tmp_path / "bench_tiny.py")
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:fastjac", "-p", "no:cacheprovider", "-q",
         "bench_tiny.py", "--benchmark-json=out.json", "--benchmark-max-time=0.02",
         "--benchmark-min-rounds=3", "--benchmark-warmup=off"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return tmp_path / "out.json"


def test_bench_from_json_of_a_real_pytest_benchmark_run(tmp_path):
    out = _run_tiny_suite(tmp_path)
    data = json.loads(out.read_text())
    names = [b["name"] for b in data["benchmarks"]]
    assert "test_gradient_speed" in names  # the --help example ran, and its asserts passed
    proc = run("bench", "--from-json", str(out), "--plot", str(tmp_path / "tiny.png"))
    assert proc.returncode == 0, proc.stderr
    for b in data["benchmarks"]:
        assert _fmt(b["stats"]["median"]) in proc.stdout, (b["name"], proc.stdout)
    assert (tmp_path / "tiny.png").read_bytes()[:8] == PNG_SIGNATURE
    assert_compare_shows(pytest_benchmark_compare(out), data)


def test_bench_help_example_is_the_tested_one():
    """The pytest-benchmark example of --help and of the docs is bench_tiny.py's test, verbatim."""
    help_text = run("bench", "--help").stdout
    source = (DATA / "bench_tiny.py").read_text()
    example = help_text.split("benchmark your own derivative code")[1]
    code = [ln.strip() for ln in example.splitlines()
            if ln.startswith("  ") and ("def " in ln or "benchmark(" in ln or "assert" in ln)]
    assert len(code) == 3, example
    for line in code:
        assert line in source, line
    # And docs/benchmarks.md's example is the same test.
    docs = (DATA.parent.parent / "docs" / "benchmarks.md").read_text()
    block = docs.split("## Benchmark your own derivative code")[1].split("```python")[1]
    block = block.split("```")[0]
    assert "def test_gradient_speed(benchmark):" in block
    for line in filter(None, map(str.strip, block.splitlines())):
        assert line in source, line


SHADOW = "raise ImportError('pytest-benchmark is hidden for this test')\n"


def test_bench_without_pytest_benchmark(tmp_path):
    """`fastjac bench` runs without pytest-benchmark; only --json needs it (exit 2, one line)."""
    (tmp_path / "pytest_benchmark").mkdir()
    (tmp_path / "pytest_benchmark" / "__init__.py").write_text(SHADOW)
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    args = [sys.executable, "-m", "fastjac", "bench", "--quick", "--sizes", "10",
            "--workloads", "tanh"]
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "tanh" in proc.stdout and "fastjac speedup" in proc.stdout
    proc = subprocess.run(args + ["--json", str(tmp_path / "x.json")], capture_output=True,
                          text=True, env=env, timeout=120)
    assert_one_line_error(proc, "`--json`", "pip install pytest-benchmark")
    assert not (tmp_path / "x.json").exists()


@pytest.mark.parametrize("impl", ["reference-loop", "fastjac", "fastjac-vectorized",
                                  "fastjac-loop", "scipy"])
def test_implementation_table_computes_the_exact_jacobian(impl):
    """Every row of the table the benchmarks and `fastjac bench` time gives the right J."""
    from fastjac._workloads import IMPLEMENTATIONS, WORKLOADS, case

    if impl == "scipy":
        pytest.importorskip("scipy")
    for workload in WORKLOADS:
        c = case(workload, 20)
        J = IMPLEMENTATIONS[impl](c)()
        assert J.shape == c.exact.shape
        # The loop's fixed step 1e-4 is the loosest: truncation h**2/6 |f'''| < 1e-8
        # max|f'''| (~10 here) and round-off EPS|f|/h < 1e-10, as in bench_engine.
        assert np.max(np.abs(J - c.exact)) <= 1e-6, workload


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
    code = ("import sys, fastjac.cli; print(sorted(m for m in ('numba', 'numpy', 'scipy', "
            "'matplotlib', 'tqdm', 'pytest', 'pytest_benchmark') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stdout.strip() == "[]"
