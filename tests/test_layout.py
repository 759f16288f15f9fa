"""The layout shows the design: layers that import only downwards, and a stable public surface.

Every module of ``src/fastjac`` belongs to one layer; a module may import
from its own layer and the ones below, never above, and never another
module's underscored names (siblings use an internal API: the names a
package's ``__init__`` exports).  The imports are read with ``ast`` from the
source, so a lazy import inside a function counts too.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

#: Layer of each module, by longest matching prefix; read from the bottom up.
LAYERS = {
    # leaves: tables, step rules, validation, one report vocabulary
    "fastjac._validate": 0, "fastjac._vocabulary": 0, "fastjac._memo": 0, "fastjac._jit": 0,
    "fastjac._inputs": 0, "fastjac.stencils": 0, "fastjac.steps": 0, "fastjac.tolerances": 0,
    # engine internals
    "fastjac._engine": 1,
    # public numerics
    "fastjac.engine": 2, "fastjac.directional": 2, "fastjac.structure": 2,
    "fastjac.reference": 2, "fastjac.nn": 2,
    # checks: argument handling, the judge and the report
    "fastjac.report": 3, "fastjac._checking": 3, "fastjac.check": 3,
    # monitor
    "fastjac.monitor": 4, "fastjac._linecheck": 4, "fastjac._monitor": 4,
    # apps: nothing below imports them
    "fastjac.cli": 5, "fastjac.pytest_plugin": 5, "fastjac._bench": 5, "fastjac._demo": 5,
    "fastjac._workloads": 5, "fastjac.__main__": 5,
    # the package itself re-exports lazily (by name, not by import)
    "fastjac": 6,
}


def _modules():
    out = {}
    for path in sorted((SRC / "fastjac").rglob("*.py")):
        name = ".".join(path.relative_to(SRC).with_suffix("").parts)
        if name.endswith(".__init__"):
            name = name[: -len(".__init__")]
        out[name] = path
    return out


MODULES = _modules()


def layer_of(name):
    best = max((p for p in LAYERS if name == p or name.startswith(p + ".")
                or (p.endswith(("_monitor",)) and name.startswith(p))), key=len, default=None)
    if best is None:
        raise KeyError(name)
    return LAYERS[best]


def _imports(name, path):
    """``(target module, imported name or None)`` for every import in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                full = f"{target}.{alias.name}"
                yield (full if full in MODULES else target), alias.name
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None


def test_every_module_has_a_layer():
    missing = [m for m in MODULES if not any(m == p or m.startswith(p) for p in LAYERS)]
    assert missing == []


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_go_down_and_never_reach_for_private_names(name):
    mine = layer_of(name)
    for target, imported in _imports(name, MODULES[name]):
        if not target.startswith("fastjac") or (target, imported) == ("fastjac", "__version__"):
            continue  # the version string is a constant, not an import of the lazy surface
        assert layer_of(target) <= mine, f"{name} (layer {mine}) imports {target} " \
                                         f"(layer {layer_of(target)})"
        if imported and imported.startswith("_") and not imported.startswith("__"):
            assert target.startswith(name + ".") or target == name, \
                f"{name} imports the private name {imported!r} of {target}"


def test_no_import_cycles():
    graph = {m: set() for m in MODULES}
    for name, path in MODULES.items():
        for target, _ in _imports(name, path):
            if target in MODULES and target != name:
                graph[name].add(target)
    state = {}

    def visit(m, trail):
        state[m] = "open"
        for t in graph[m]:
            if state.get(t) == "open":
                raise AssertionError(f"import cycle: {' -> '.join(trail + [m, t])}")
            if t not in state:
                visit(t, trail + [m])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [])


# The public surface before the restructuring (fastjac 0.1.0 as it landed):
# every name must still be there.
PUBLIC_BEFORE = {
    "fastjac": ["GradientMonitor", "JacobianCheck", "__version__", "assert_grad",
                "assert_jacobian", "assert_jvp", "assert_vjp", "batch_independent",
                "check_grad", "check_jacobian", "check_jvp", "check_vjp", "gradient",
                "jacobian", "jvp", "nn", "numeric_jacobian", "numeric_jacobian_test",
                "reference", "sampled_jacobian", "stencils", "vjp"],
    "fastjac.nn": ["BACKENDS", "CLIP", "RULES", "cross_entropy", "cross_entropy_mean", "dense",
                   "dense_backward", "dense_forward", "describe", "get_backend", "leaky_relu",
                   "log_softmax", "mse", "relu", "set_backend", "sigmoid", "softmax",
                   "softmax_cross_entropy", "tanh"],
    "fastjac.engine": ["jacobian", "gradient", "jvp", "numeric_jacobian", "jacobian_with_info",
                       "jvp_with_info", "JacobianInfo", "DEFAULT_CHUNK_BYTES"],
    "fastjac.check": ["check_jacobian", "check_grad", "check_vjp", "check_jvp",
                      "assert_jacobian", "assert_grad", "assert_vjp", "assert_jvp",
                      "numeric_jacobian_test", "GRAD_MODES"],
    "fastjac.directional": ["vjp", "project", "sampled_jacobian", "sampled_jacobian_with_info"],
    "fastjac.structure": ["batch_independent", "BatchIndependent", "color_columns",
                          "structured_jacobian", "OUTPUTS"],
    "fastjac.monitor": ["GradientMonitor", "GradientWarning", "GradientCheckError",
                        "MonitorReport", "CheckRecord", "DEFAULT_EVERY"],
    "fastjac.stencils": ["Stencil", "STENCILS", "DEFAULT_ORDER", "get_stencil"],
    "fastjac.steps": ["eps_for", "relative_step", "absolute_step"],
    "fastjac.tolerances": ["Tolerance", "TOLERANCES", "tolerance_for", "tolerance_dtype",
                           "NOISE_FACTOR", "ROUNDOFF_FACTOR"],
    "fastjac.report": ["JacobianCheck", "Mismatch", "STATUSES", "VERDICTS"],
}


@pytest.mark.parametrize("module", sorted(PUBLIC_BEFORE))
def test_every_public_name_of_before_still_exists(module):
    import importlib

    mod = importlib.import_module(module)
    missing = [n for n in PUBLIC_BEFORE[module] if not hasattr(mod, n)]
    assert missing == [], f"{module} lost {missing}"
    if module in ("fastjac", "fastjac.nn"):
        assert set(PUBLIC_BEFORE[module]) <= set(dir(mod))


def test_the_lazy_surface_is_visible_to_type_checkers():
    """``__init__.pyi`` names every public name (type checkers read it instead of
    the lazy ``__getattr__``), the package is marked typed, and the functions
    that once took ``**options`` show their keywords to ``help()``."""
    import inspect

    import fastjac

    pkg = SRC / "fastjac"
    assert (pkg / "py.typed").exists()
    stub = (pkg / "__init__.pyi").read_text()
    for name in fastjac.__all__:
        assert f" as {name}" in stub or f"{name}:" in stub, name
    for fn in (fastjac.gradient, fastjac.vjp, fastjac.sampled_jacobian, fastjac.check_vjp):
        params = inspect.signature(fn).parameters
        assert {"method", "order", "step", "vectorized", "max_memory"} <= set(params), fn
        assert not any(p.kind is p.VAR_KEYWORD for p in params.values()), fn
