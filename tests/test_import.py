"""``import fastjac`` stays light: no Numba, no compilation, no optional extras."""
import subprocess
import sys

HEAVY = ["numba", "llvmlite", "scipy", "dask", "distributed", "tqdm", "matplotlib"]


def _loaded_after(statement):
    code = (f"import sys; {statement}; "
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return [m for m in out.stdout.strip().split(",") if m]


def test_import_fastjac_loads_no_heavy_module():
    assert _loaded_after("import fastjac") == []


def test_plain_engine_call_loads_no_heavy_module():
    assert _loaded_after("import fastjac, numpy as np; fastjac.jacobian(np.sin, np.ones(3))") == []
