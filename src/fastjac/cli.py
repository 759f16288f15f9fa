"""The ``fastjac`` command: ``demo``, ``check`` and ``bench``.

Startup stays light: argparse and the standard library only; numpy, the
engine, the checks and matplotlib are imported inside each subcommand.

Exit codes: 0 success (every check passed), 1 a check failed or the user's
function raised, 2 bad arguments (argparse's convention), including every
argument the library's own validation rejects.  User errors are reported as
one line on stderr, never as a traceback.  When stdout is a pipe that closes
early (``fastjac check ... | head -c1``) the command stops quietly with
status 141 (128 + SIGPIPE), as Unix tools killed by SIGPIPE do.
"""
from __future__ import annotations

import argparse
import os
import re
import signal
import sys

__all__ = ["main"]

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
EXIT_PIPE = 128 + getattr(signal, "SIGPIPE", 13)


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

Exit status: 0 success, 1 a check failed or your function raised, 2 bad
arguments.  A closed output pipe (`| head`) stops a command quietly (status 141).
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
analytic Jacobian, shape f(x).shape + x.shape (a gradient for scalar f).  The
check is fastjac.check_jacobian's, with its validation: an --expected of
another layout (a transposed J, say) is an error, never reshaped; only size-1
axes may differ.

examples:
  fastjac check numpy:tanh --shape 5
  fastjac check numpy:sin --x "-1,0.5,2" --expected mygrads.py:dsin
  fastjac check layers.py:loss --shape 3,4 --expected layers.py:dloss_dW --order 4
  fastjac check layers.py:loss --shape 3,4 --dtype float32 --seed 1

Exit status: 0 the check passed (or, without --expected, the Jacobian was
computed), 1 it failed or f (or --expected) raised, 2 bad arguments, including
any the library rejects (a transposed --expected, --rtol=-1, --order 3).
"""

_BENCH_EPILOG = """\
examples:
  fastjac bench --quick                      about 10 s; sizes 10, 100, 1000
  fastjac bench --sizes 10,100,1000,3000 --json bench.json --plot bench.png
  fastjac bench --from-json .benchmarks/Linux-CPython-3.11-64bit/0001_run.json --plot out.png
  fastjac bench --quick --markdown           a table to paste into a README
  pytest-benchmark compare bench.json        --json files are pytest-benchmark's own format

Implementations: the notebook's element loop (fastjac.reference.numeric_jacobian),
fastjac.jacobian, and scipy's approx_derivative when scipy is installed.
--json needs pytest-benchmark (pip install pytest-benchmark); its entries are
named like benchmarks/bench_engine.py's tests, so `pytest --benchmark-compare`
pairs them.  --from-json reads any pytest-benchmark file: one row per group
(and n), one column per implementation; --plot draws every group (time vs n
where the group or the parameters give n, bars otherwise) and needs
matplotlib (pip install "fastjac[plot]").

benchmark your own derivative code: fastjac's functions are plain callables,
so pytest-benchmark's `benchmark` fixture times them like any other:

  def test_gradient_speed(benchmark):
      g = benchmark(fastjac.gradient, loss, W)    # times fastjac.gradient(loss, W)
      assert g.shape == W.shape

  pytest --benchmark-json=mine.json && fastjac bench --from-json mine.json --plot mine.png
"""


#: Each command's options: (flags, argparse keywords), in the order --help lists them.
_OPTIONS = {
    "demo": (
        (("--full",), dict(action="store_true", help="also print the matrices")),
        (("--seed",), dict(type=int, default=0, help="seed of the random W, b, x (default 0)")),
        (("--at-scale",), dict(default="100,1000", metavar="N[,N...]",
                               help="input sizes of the 'at scale' table (default 100,1000; "
                                    "0 skips it)")),
    ),
    "check": (
        (("target",), dict(metavar="MODULE:FUNC", help="the function f(x) to differentiate")),
        (("--shape",), dict(help="shape of x, e.g. 3 or 3,4 (random x from --seed)")),
        (("--x",), dict(dest="x_values", metavar="VALUES",
                        help='comma-separated values of x, e.g. "1,2,3" (reshaped to --shape)')),
        (("--expected",), dict(metavar="MODULE:FUNC",
                               help="function returning the analytic Jacobian at x")),
        (("--method",), dict(default="central", help="finite-difference method: central, "
                                                     "forward, backward or complex")),
        (("--order",), dict(type=int, default=None, help="truncation order (method default)")),
        (("--dtype",), dict(default="float64", help="float32 or float64 (default float64)")),
        (("--seed",), dict(type=int, default=0, help="seed of the random x (default 0)")),
        (("--rtol",), dict(type=float, default=None, help="relative tolerance of the check")),
        (("--atol",), dict(type=float, default=None, help="absolute tolerance of the check")),
    ),
    "bench": (
        (("--quick",), dict(action="store_true", help="few repeats: finishes in ~10 s")),
        (("--sizes",), dict(default="10,100,1000", help="comma-separated n (default 10,100,1000)")),
        (("--workloads",), dict(default=None,
                                help="comma-separated subset of the workloads (default: all)")),
        (("--json",), dict(metavar="PATH", help="write the results as pytest-benchmark JSON "
                                                "(needs pytest-benchmark)")),
        (("--plot",), dict(metavar="PATH.png", help="write a PNG, one panel per group: log-log "
                                                    "time vs n (bars without n)")),
        (("--from-json",), dict(metavar="PATH",
                                help="render any pytest-benchmark JSON file instead of running")),
        (("--markdown",), dict(action="store_true", help="print the table as markdown")),
        (("--seed",), dict(type=int, default=0, help="seed of the random inputs (default 0)")),
    ),
}


def _parser():
    p = _Parser(prog="fastjac", description="Fast numeric Jacobians and derivative checks.",
                epilog=_MAIN_EPILOG, formatter_class=_FORMATTER)
    p.add_argument("--version", action="store_true", help="print the version and exit")
    sub = p.add_subparsers(dest="command", metavar="{demo,check,bench}", parser_class=_Parser)
    commands = {
        "demo": (_cmd_demo, "rerun the reference notebook's checks with fastjac",
                 "Rerun every gradient check of the reference notebook with fastjac: verdict, "
                 "error norm, time against the element loop.", _DEMO_EPILOG),
        "check": (_cmd_check, "check a function's Jacobian from the shell",
                  "Numeric Jacobian of MODULE:FUNC at a point x, checked against --expected "
                  "when given.", _CHECK_EPILOG),
        "bench": (_cmd_bench, "benchmark fastjac against the element loop (and scipy)",
                  "Time full Jacobians of the engine workloads: the notebook's element loop, "
                  "fastjac, and scipy if installed.", _BENCH_EPILOG),
    }
    for name, (func, short, description, epilog) in commands.items():
        c = sub.add_parser(name, help=short, description=description, epilog=epilog,
                           formatter_class=_FORMATTER)
        for flags, keywords in _OPTIONS[name]:
            c.add_argument(*flags, **keywords)
        c.set_defaults(func=func)
    return p


# Options whose value may start with "-" (a negative number, "-1,0.5,2").
# argparse takes "-1,0.5,2" for an option ("expected one argument"); joined
# as "--x=-1,0.5,2" it is a value, and bad values get the usual messages.
_SIGNED_OPTIONS = ("--x", "--shape", "--rtol", "--atol", "--seed", "--order", "--sizes",
                   "--at-scale")


def _join_signed_values(argv):
    out, k = [], 0
    while k < len(argv):
        token = argv[k]
        if token == "--":
            return out + list(argv[k:])
        value = argv[k + 1] if k + 1 < len(argv) else None
        if (token in _SIGNED_OPTIONS and value is not None and value.startswith("-")
                and not value.startswith("--") and len(value) > 1):
            out.append(f"{token}={value}")
            k += 2
            continue
        out.append(token)
        k += 1
    return out


def _silence_stdout():
    """After EPIPE: point stdout at devnull, so the interpreter's final flush is quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no file descriptor (stdout replaced, e.g. captured)
        pass


def main(argv=None) -> int:
    """Entry point of the ``fastjac`` console script; returns the exit code."""
    parser = _parser()
    argv = _join_signed_values(sys.argv[1:] if argv is None else list(argv))
    try:
        args = parser.parse_args(argv)
        if args.version:
            from . import __version__

            print(f"fastjac {__version__}")
            return EXIT_OK
        if args.command is None:
            parser.print_help()
            return EXIT_USAGE
        try:
            code = args.func(args)
        except UsageError as exc:
            print(f"fastjac {args.command}: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return code
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_PIPE
    except KeyboardInterrupt:
        print("fastjac: interrupted", file=sys.stderr)
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


# Parameter names in the library's messages -> the flags that set them.
_FLAGS = {"rtol": "--rtol", "atol": "--atol", "method": "--method", "order": "--order",
          "expected": "--expected"}
_FLAG_NAME = re.compile(r"`(%s)`" % "|".join(_FLAGS))

# An attribute set on every exception that leaves the user's code.
_RAISED_BY = "_fastjac_cli_raised_by"


def _watched(fn, role):
    """``fn``, but each exception leaving it is marked as raised by ``role``.

    The library catches some of f's exceptions (the batching probe) and
    re-raises others with a note, or wraps them (``raise ... from exc``);
    the mark tells, after the fact, whether an error came out of the user's
    code (exit 1) or from the library's validation of an argument (exit 2).
    """
    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            try:
                setattr(exc, _RAISED_BY, role)
            except AttributeError:
                pass
            raise

    call.__name__ = getattr(fn, "__name__", role)
    call.__qualname__ = getattr(fn, "__qualname__", call.__name__)
    call.__doc__ = getattr(fn, "__doc__", None)
    return call


def _raised_by(exc):
    """``"f"``/``"--expected"`` when ``exc`` (or what it wraps) left the user's code."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        role = getattr(exc, _RAISED_BY, None)
        if role:
            return role
        seen.add(id(exc))
        exc = exc.__cause__  # an explicit ``raise ... from exc``
    return None


def _first_line(exc):
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def _user_error(exc):
    """One line describing an exception raised while evaluating the user's code."""
    first = _first_line(exc)
    line = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    # The engine notes where f was evaluated: "fastjac: raised by f (at x itself)".
    notes = [n for n in getattr(exc, "__notes__", ()) if n.startswith("fastjac: raised by f")]
    where = notes[0][len("fastjac: raised by f"):].strip() if notes else ""
    return f"{line} {where}" if where else line


def _outcome_of(exc, command):
    """Exit code for an exception from the library or the user's code, after saying why.

    The user's code raising is a failed check (1); the library rejecting an
    argument (ValueError, TypeError, or MemoryError before allocating) is a
    usage error (2).  Anything else is reported as one line with status 1.
    """
    role = _raised_by(exc)
    if role is not None:
        print(f"fastjac {command}: error: {role} raised {_user_error(exc)}", file=sys.stderr)
        return EXIT_FAIL
    if isinstance(exc, (ValueError, TypeError, MemoryError)):
        raise UsageError(_FLAG_NAME.sub(lambda m: f"`{_FLAGS[m.group(1)]}`", _first_line(exc)))
    print(f"fastjac {command}: error: {type(exc).__name__}: {_first_line(exc)}", file=sys.stderr)
    return EXIT_FAIL


def _cmd_check(args):
    import numpy as np

    x = _build_x(args)
    if args.expected is None and (args.rtol is not None or args.atol is not None):
        raise UsageError("`--rtol` and `--atol` set the tolerance of a comparison: "
                         "give `--expected` too (without it nothing is compared).")
    f = _watched(_load(args.target, "MODULE:FUNC"), "f")
    expected_fn = None if args.expected is None else _watched(_load(args.expected, "--expected"),
                                                                "--expected")
    opts = {"method": args.method, "order": args.order}
    np.set_printoptions(precision=6, suppress=True, linewidth=100)
    print(f"fastjac check {args.target} at x of shape {x.shape}, dtype {x.dtype}"
          + ("" if args.x_values else f" (random, seed {args.seed})"))
    sys.stdout.flush()  # before anything reaches stderr
    try:
        if expected_fn is None:
            result = _numeric(f, x, opts)
        else:
            from .check import check_jacobian

            result = check_jacobian(f, x, expected_fn(x.copy()), rtol=args.rtol,
                                    atol=args.atol, **opts)
    except Exception as exc:
        return _outcome_of(exc, "check")
    if expected_fn is None:
        _print_numeric(*result)
        return EXIT_OK
    print(result)
    return EXIT_OK if result.passed else EXIT_FAIL


def _numeric(f, x, opts):
    """The numeric Jacobian, its info, and a noise estimate from a doubled step."""
    import numpy as np

    from .engine import jacobian, jacobian_with_info

    J, info = jacobian_with_info(f, x, **opts)
    # Same evaluations at twice the step: for a stencil of order p the
    # truncation error at h is about |J_h - J_2h| / (2**p - 1) (Richardson),
    # and round-off shows up in the same difference.
    J2 = jacobian(f, x, step=2 * info.step, **opts)
    return J, info, np.abs(J - J2) / (2 ** info.stencil.order - 1)


def _print_numeric(J, info, noise):
    import numpy as np

    print(f"method {info.stencil.method}, order {info.stencil.order}, "
          f"strategy {info.strategy}, {info.nfev} evaluations of f")
    print(f"\nnumeric Jacobian, shape {J.shape}:")
    print(J)
    print(f"\nnoise estimate (step doubling): max {noise.max(initial=0.0):.2e}, "
          f"relative to max|J| {noise.max(initial=0.0) / max(np.abs(J).max(initial=0.0), 1e-300):.1e}")
    print("no --expected given: nothing to compare against (exit 0).")


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
    from ._bench import (JSONFormatError, MissingPytestBenchmark, baseline_of, cpu_of,
                         have_pytest_benchmark, load_json, plot, run, table, workload_names,
                         write_json)

    if args.json and not args.from_json and not have_pytest_benchmark():
        raise UsageError("`--json` writes pytest-benchmark's format and needs pytest-benchmark; "
                         "install it with pip install pytest-benchmark.")
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
            data = load_json(args.from_json)
        except JSONFormatError as exc:
            raise UsageError(f"`--from-json`: {exc}.") from None
    else:
        sizes = _parse_sizes(args.sizes)
        workloads = None
        if args.workloads:
            workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
            bad = [w for w in workloads if w not in workload_names()]
            if bad:
                raise UsageError(f"`--workloads` must be among {workload_names()}; "
                                 f"got {bad}.")
        data = run(sizes, workloads=workloads, quick=args.quick, seed=args.seed)
    label = "quick run" if (data.get("fastjac_bench") or {}).get("quick") else "median times"
    base = baseline_of(data)
    base_text = "loop" if base == "reference-loop" else base
    print(f"fastjac bench ({label}) on {cpu_of(data)}"
          + (f"; speedup = {base_text} time / time" if base else ""))
    print(table(data, markdown=args.markdown))
    if args.json:
        try:
            write_json(data, args.json)
        except OSError as exc:
            raise UsageError(f"`--json`: cannot write {args.json!r}: {exc.strerror}.") from None
        except (JSONFormatError, MissingPytestBenchmark) as exc:
            raise UsageError(f"`--json`: {exc}.") from None
        print(f"wrote {args.json}")
    if args.plot:
        try:
            plot(data, args.plot)
        except JSONFormatError as exc:
            raise UsageError(f"`--plot`: {exc}.") from None
        print(f"wrote {args.plot}")
    bad = [b["name"] for b in data["benchmarks"]
           if (b.get("extra_info") or {}).get("correct") is False]
    if bad:
        print(f"fastjac bench: results disagree with the exact Jacobian in {bad}", file=sys.stderr)
        return EXIT_FAIL
    return EXIT_OK
