"""The ``fastjac`` command: ``demo``, ``check`` and ``bench``.

Startup stays light: argparse and the standard library only; numpy, the
engine, the checks and matplotlib are imported inside each subcommand.

Exit codes: 0 success (every check passed), 1 a check failed or the user's
function raised, 2 bad arguments (argparse's convention).  User errors are
reported as one line on stderr, never as a traceback.
"""
from __future__ import annotations

import argparse
import os
import re
import sys

__all__ = ["main"]

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad arguments: reported as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, but errors are a single line on stderr (exit 2)."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


_FORMATTER = argparse.RawDescriptionHelpFormatter

_MAIN_EPILOG = """\
examples:
  fastjac demo                      rerun the reference notebook's 11 checks with fastjac
  fastjac check mymod:f --shape 3   numeric Jacobian of mymod.f at a random x of shape (3,)
  fastjac check layer.py:loss --shape 3,4 --expected layer.py:grad
  fastjac bench --quick             a ~10 s benchmark against the element-by-element loop
"""

_DEMO_EPILOG = """\
examples:
  fastjac demo                 verdict, error norm and timing for each check
  fastjac demo --full          also print the analytic and numeric matrices, as the notebook did
  fastjac demo --at-scale 0    skip the "at scale" table (default sizes 100,1000)

Exit status is 0 when every check passes, 1 otherwise.
"""

_CHECK_EPILOG = """\
MODULE is a dotted module importable from the current directory or sys.path
(`mypkg.layers`) or a path to a .py file (`./layers.py`); FUNC may be dotted
(`softmax.forward`).  --expected names a function that takes x and returns the
analytic Jacobian, shape f(x).shape + x.shape (a gradient for scalar f).

examples:
  fastjac check numpy:tanh --shape 5
  fastjac check numpy:sin --x "0,1,2" --expected mygrads.py:dsin
  fastjac check layers.py:loss --shape 3,4 --expected layers.py:dloss_dW --order 4
  fastjac check layers.py:loss --shape 3,4 --dtype float32 --seed 1

Negative values need `=`: --x=-1,0.5,2 (argparse reads "-1,..." as an option).

Exit status: 0 the check passed (or, without --expected, the Jacobian was
computed), 1 it failed or f raised, 2 bad arguments.
"""

_BENCH_EPILOG = """\
examples:
  fastjac bench --quick                      about 10 s; sizes 10, 100, 1000
  fastjac bench --sizes 10,100,1000,3000 --json bench.json --plot bench.png
  fastjac bench --from-json .benchmarks/Linux-CPython-3.11-64bit/0001_run.json --plot out.png
  fastjac bench --quick --markdown           a table to paste into a README

Implementations: the notebook's element loop (fastjac.reference.numeric_jacobian),
fastjac.jacobian, and scipy's approx_derivative when scipy is installed.
--plot needs matplotlib (pip install "fastjac[plot]").
"""


def _parser():
    p = _Parser(prog="fastjac", description="Fast numeric Jacobians and derivative checks.",
                epilog=_MAIN_EPILOG, formatter_class=_FORMATTER)
    p.add_argument("--version", action="store_true", help="print the version and exit")
    sub = p.add_subparsers(dest="command", metavar="{demo,check,bench}", parser_class=_Parser)

    d = sub.add_parser("demo", help="rerun the reference notebook's checks with fastjac",
                       description="Rerun every gradient check of the reference notebook "
                       "with fastjac: verdict, error norm, time against the element loop.",
                       epilog=_DEMO_EPILOG, formatter_class=_FORMATTER)
    d.add_argument("--full", action="store_true", help="also print the matrices")
    d.add_argument("--seed", type=int, default=0, help="seed of the random W, b, x (default 0)")
    d.add_argument("--at-scale", default="100,1000", metavar="N[,N...]",
                   help="input sizes of the 'at scale' table (default 100,1000; 0 skips it)")
    d.set_defaults(func=_cmd_demo)

    c = sub.add_parser("check", help="check a function's Jacobian from the shell",
                       description="Numeric Jacobian of MODULE:FUNC at a point x, "
                       "checked against --expected when given.",
                       epilog=_CHECK_EPILOG, formatter_class=_FORMATTER)
    c.add_argument("target", metavar="MODULE:FUNC", help="the function f(x) to differentiate")
    c.add_argument("--shape", help="shape of x, e.g. 3 or 3,4 (random x from --seed)")
    c.add_argument("--x", dest="x_values", metavar="VALUES",
                   help='comma-separated values of x, e.g. "1,2,3" (reshaped to --shape)')
    c.add_argument("--expected", metavar="MODULE:FUNC",
                   help="function returning the analytic Jacobian at x")
    c.add_argument("--method", default="central",
                   help="finite-difference method: central, forward, backward or complex")
    c.add_argument("--order", type=int, default=None, help="truncation order (method default)")
    c.add_argument("--dtype", default="float64", help="float32 or float64 (default float64)")
    c.add_argument("--seed", type=int, default=0, help="seed of the random x (default 0)")
    c.add_argument("--rtol", type=float, default=None, help="relative tolerance of the check")
    c.add_argument("--atol", type=float, default=None, help="absolute tolerance of the check")
    c.set_defaults(func=_cmd_check)

    b = sub.add_parser("bench", help="benchmark fastjac against the element loop (and scipy)",
                       description="Time full Jacobians of the engine workloads: the "
                       "notebook's element loop, fastjac, and scipy if installed.",
                       epilog=_BENCH_EPILOG, formatter_class=_FORMATTER)
    b.add_argument("--quick", action="store_true", help="few repeats: finishes in ~10 s")
    b.add_argument("--sizes", default="10,100,1000", help="comma-separated n (default 10,100,1000)")
    b.add_argument("--workloads", default=None,
                   help="comma-separated subset of the workloads (default: all)")
    b.add_argument("--json", metavar="PATH", help="write the results (pytest-benchmark layout)")
    b.add_argument("--plot", metavar="PATH.png", help="write a log-log plot of time vs n")
    b.add_argument("--from-json", metavar="PATH",
                   help="render a pytest-benchmark JSON file instead of running")
    b.add_argument("--markdown", action="store_true", help="print the table as markdown")
    b.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")
    b.set_defaults(func=_cmd_bench)
    return p


def main(argv=None) -> int:
    """Entry point of the ``fastjac`` console script; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.version:
        from . import __version__

        print(f"fastjac {__version__}")
        return EXIT_OK
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return args.func(args)
    except UsageError as exc:
        print(f"fastjac {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"fastjac {args.command}: interrupted", file=sys.stderr)
        return 130


# --- demo -------------------------------------------------------------------

def _cmd_demo(args):
    sizes = () if args.at_scale.strip() == "0" else tuple(_parse_sizes(args.at_scale, "--at-scale"))
    from ._demo import run_demo

    ok = run_demo(full=args.full, seed=args.seed, scale_sizes=sizes)
    return EXIT_OK if ok else EXIT_FAIL


# --- check ------------------------------------------------------------------

def _load(target, what):
    """Resolve ``MODULE:FUNC`` (MODULE dotted or a .py path) to a callable."""
    import importlib
    import importlib.util

    module_name, sep, attr = target.rpartition(":")
    if not sep or not module_name or not attr:
        raise UsageError(f"`{what}` must look like MODULE:FUNC (e.g. mymod:f or ./f.py:f); "
                         f"got {target!r}.")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like `python -m`: the user's modules are here
    is_path = module_name.endswith(".py") or os.sep in module_name or "/" in module_name
    try:
        if is_path:
            path = os.path.abspath(module_name)
            if not os.path.isfile(path):
                raise UsageError(f"`{what}`: no such file {module_name!r}.")
            name = "_fastjac_user_" + os.path.splitext(os.path.basename(path))[0]
            module = sys.modules.get(name)
            if module is None or getattr(module, "__file__", None) != path:
                spec = importlib.util.spec_from_file_location(name, path)
                module = importlib.util.module_from_spec(spec)
                sys.modules[name] = module
                spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except UsageError:
        raise
    except ImportError as exc:
        raise UsageError(f"`{what}`: cannot import module {module_name!r}: {exc}.") from None
    except SyntaxError as exc:
        raise UsageError(f"`{what}`: syntax error in {module_name!r} line {exc.lineno}: "
                         f"{exc.msg}.") from None
    except Exception as exc:  # the module itself raised on import
        raise UsageError(f"`{what}`: importing {module_name!r} raised "
                         f"{type(exc).__name__}: {exc}.") from None
    obj = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            names = [n for n in dir(module) if not n.startswith("_")
                     and callable(getattr(module, n, None))][:12]
            raise UsageError(f"`{what}`: module {module_name!r} has no attribute {attr!r}; "
                             f"callables there: {', '.join(names) or 'none'}.") from None
    if not callable(obj):
        raise UsageError(f"`{what}`: {target!r} is not callable; got {type(obj).__name__}.")
    return obj


_DTYPES = ("float32", "float64")


def _parse_shape(text):
    """``"3,4"``, ``"3x4"``, ``"(3, 4)"`` or ``"3,"`` -> a tuple; anything else is an error."""
    cleaned = text.strip().strip("()[] ").replace(" ", "")
    if cleaned == "":
        return ()
    parts = re.split(r"[,x]", cleaned)
    if len(parts) > 1 and parts[-1] == "" and cleaned.endswith(","):
        parts = parts[:-1]  # "3," as in a Python tuple
    try:
        shape = tuple(int(s) for s in parts)  # an empty or non-integer part raises
    except ValueError:
        raise UsageError(f"`--shape` must be comma-separated positive integers such as 3,4; "
                         f"got {text!r}.") from None
    if any(s <= 0 for s in shape):
        raise UsageError(f"`--shape` must have positive sizes; got {text!r}.")
    return shape


def _build_x(args):
    import numpy as np

    if args.dtype not in _DTYPES:
        raise UsageError(f"`--dtype` must be one of {list(_DTYPES)}; got {args.dtype!r}.")
    if args.shape is None and args.x_values is None:
        raise UsageError("give the point with `--shape` (random x) or `--x` (its values).")
    shape = None if args.shape is None else _parse_shape(args.shape)
    if args.x_values is None:
        return np.random.default_rng(args.seed).standard_normal(shape).astype(args.dtype)
    try:
        values = [float(v) for v in args.x_values.strip("[]() ").split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"`--x` must be comma-separated numbers such as \"1,2,3\"; "
                         f"got {args.x_values!r}.") from None
    x = np.array(values, dtype=args.dtype)
    if shape is not None:
        if int(np.prod(shape)) != x.size:
            raise UsageError(f"`--x` has {x.size} values but `--shape` {args.shape} needs "
                             f"{int(np.prod(shape))}.")
        x = x.reshape(shape)
    return x


def _check_method(args):
    from .stencils import STENCILS, get_stencil

    methods = sorted({m for m, _ in STENCILS})
    if args.method not in methods:
        raise UsageError(f"`--method` must be one of {methods}; got {args.method!r}.")
    try:
        get_stencil(args.method, args.order)
    except ValueError as exc:
        raise UsageError(str(exc).replace("`order`", "`--order`")) from None


def _user_error(exc):
    """One line describing an exception raised while evaluating the user's code."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _cmd_check(args):
    import numpy as np

    x = _build_x(args)
    _check_method(args)
    f = _load(args.target, "MODULE:FUNC")
    expected_fn = None if args.expected is None else _load(args.expected, "--expected")
    opts = {"method": args.method, "order": args.order}
    np.set_printoptions(precision=6, suppress=True, linewidth=100)
    print(f"fastjac check {args.target} at x of shape {x.shape}, dtype {x.dtype}"
          + ("" if args.x_values else f" (random, seed {args.seed})"))
    try:
        if expected_fn is None:
            return _print_numeric(f, x, opts)
        expected = np.asarray(expected_fn(x.copy()))
        return _print_check(f, x, expected, opts, args)
    except UsageError:
        raise
    except Exception as exc:
        print(f"fastjac check: error: {_user_error(exc)}", file=sys.stderr)
        return EXIT_FAIL


def _print_numeric(f, x, opts):
    """The numeric Jacobian, with a noise estimate from a doubled step."""
    import numpy as np

    from .engine import jacobian, jacobian_with_info

    J, info = jacobian_with_info(f, x, **opts)
    # Same evaluations at twice the step: for a stencil of order p the
    # truncation error at h is about |J_h - J_2h| / (2**p - 1) (Richardson),
    # and round-off shows up in the same difference.
    J2 = jacobian(f, x, step=2 * info.step, **opts)
    noise = np.abs(J - J2) / (2 ** info.stencil.order - 1)
    print(f"method {info.stencil.method}, order {info.stencil.order}, "
          f"strategy {info.strategy}, {info.nfev} evaluations of f")
    print(f"\nnumeric Jacobian, shape {J.shape}:")
    print(J)
    print(f"\nnoise estimate (step doubling): max {noise.max(initial=0.0):.2e}, "
          f"relative to max|J| {noise.max(initial=0.0) / max(np.abs(J).max(initial=0.0), 1e-300):.1e}")
    print("no --expected given: nothing to compare against (exit 0).")
    return EXIT_OK


def _print_check(f, x, expected, opts, args):
    import numpy as np

    shape = np.shape(f(x.copy())) + x.shape
    if expected.shape != shape:
        if expected.size != int(np.prod(shape)):
            raise UsageError(f"`--expected` returned shape {expected.shape}; the Jacobian of f "
                             f"at x has shape {shape} (f(x).shape + x.shape).")
        expected = expected.reshape(shape)  # size-1 axes may differ, as in the notebook
    try:
        from .check import check_jacobian
    except ImportError:
        check_jacobian = None
    if check_jacobian is None:  # the checks module is not installed: a plain comparison
        from ._demo import _internal_verdict

        v = _internal_verdict(f, x, expected, **opts)
        print(f"verdict: {v.verdict}  (error norm {v.error_norm:.3e}; internal comparison)")
        return EXIT_OK if v.passed else EXIT_FAIL
    report = check_jacobian(f, x, expected, rtol=args.rtol, atol=args.atol, **opts)
    print(report)
    return EXIT_OK if report.passed else EXIT_FAIL


# --- bench ------------------------------------------------------------------

def _parse_sizes(text, name="--sizes"):
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        sizes = []
    if not sizes or any(n <= 0 for n in sizes):
        raise UsageError(f"`{name}` must be comma-separated positive integers such as "
                         f"10,100,1000; got {text!r}.")
    return sizes


def _cmd_bench(args):
    from . import _bench

    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise UsageError("`--plot` needs matplotlib; install it with "
                             "pip install \"fastjac[plot]\".") from None
    for flag, path in (("--plot", args.plot), ("--json", args.json)):
        if path and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            raise UsageError(f"`{flag}`: directory of {path!r} does not exist.")
    if args.from_json:
        try:
            data = _bench.load_json(args.from_json)
        except _bench.JSONFormatError as exc:
            raise UsageError(f"`--from-json`: {exc}.") from None
    else:
        sizes = _parse_sizes(args.sizes)
        workloads = None
        if args.workloads:
            workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
            bad = [w for w in workloads if w not in _bench.workload_names()]
            if bad:
                raise UsageError(f"`--workloads` must be among {_bench.workload_names()}; "
                                 f"got {bad}.")
        data = _bench.run(sizes, workloads=workloads, quick=args.quick, seed=args.seed)
    label = "quick run" if (data.get("fastjac_bench") or {}).get("quick") else "median times"
    print(f"fastjac bench ({label}) on {_bench.cpu_of(data)}; speedup = loop time / time")
    print(_bench.table(data, markdown=args.markdown))
    if args.json:
        import json

        try:
            with open(args.json, "w") as fh:
                json.dump(data, fh, indent=1)
        except OSError as exc:
            raise UsageError(f"`--json`: cannot write {args.json!r}: {exc.strerror}.") from None
        print(f"wrote {args.json}")
    if args.plot:
        try:
            _bench.plot(data, args.plot)
        except _bench.JSONFormatError as exc:
            raise UsageError(f"`--plot`: {exc}.") from None
        print(f"wrote {args.plot}")
    bad = [b["name"] for b in data["benchmarks"]
           if (b.get("extra_info") or {}).get("correct") is False]
    if bad:
        print(f"fastjac bench: results disagree with the loop in {bad}", file=sys.stderr)
        return EXIT_FAIL
    return EXIT_OK
