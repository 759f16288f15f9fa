"""fastjac.nn and its environment: import weight, the compile cache, the docs table."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fastjac import nn

ROOT = Path(__file__).resolve().parents[1]
SETPRIV = Path("/usr/bin/setpriv")
NOBODY = ["--reuid=65534", "--regid=65534", "--clear-groups"]


def test_import_does_not_import_numba():
    code = ("import sys, fastjac, fastjac.nn; from fastjac.nn import softmax, RULES; "
            "assert 'numba' not in sys.modules, 'numba imported'; print('ok')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"


def test_numpy_backend_never_imports_numba():
    code = textwrap.dedent("""
        import sys
        import numpy as np
        from fastjac import nn
        nn.set_backend("numpy")
        for rule in nn.RULES.values():
            s = rule.sample((4, 3))
            rule.forward(*s.args); rule.jacobian(*s.args); rule.vjp(*s.vjp_args, s.cotangent)
        assert "numba" not in sys.modules, "numba imported"
        print("ok")
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"


def test_kernels_run_as_python_with_the_jit_disabled():
    """NUMBA_DISABLE_JIT=1 (coverage runs, debugging) runs the kernels as Python:
    the results, and the loss values' type (a float), are those of the JIT."""
    code = textwrap.dedent("""
        import numpy as np
        from fastjac import nn
        for rule in nn.RULES.values():
            s = rule.sample((4, 3))
            for backend in ("numba", "numpy"):
                value = rule.forward(*s.args, backend=backend)
                if rule.kind == "loss":
                    assert type(value) is float, (rule.name, backend, type(value))
                    assert type(rule.value_and_grad(*s.args, backend=backend)[0]) is float
                rule.vjp(*s.vjp_args, s.cotangent, backend=backend)
        print("ok")
    """)
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"


def test_cache_fallback_monkeypatched_no_locator():
    """Real Numba code path: with no cache locator Numba raises 'cannot cache'
    at decoration; lazy_njit must fall back to cache=False and still work."""
    code = textwrap.dedent("""
        import numpy as np
        import numba.core.caching as caching
        caching.CacheImpl._locator_classes = []   # no locator can be found
        import numba
        try:
            numba.njit(cache=True)(lambda x: x)
        except RuntimeError as e:
            assert "cannot cache" in str(e), e
        else:
            raise SystemExit("numba did not refuse to cache")
        from fastjac import nn
        z = np.array([[1.0, 2.0], [3.0, 4.0]])
        J = nn.softmax.jacobian(z, backend="numba")
        kernel = nn.softmax.routes["jacobian"].kernel
        assert kernel.dispatcher._cache.__class__.__name__ == "NullCache"
        np.testing.assert_allclose(J, nn.softmax.jacobian(z, backend="numpy"), atol=1e-15)
        print("ok")
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("ok")


def nobody_can_run(python, env, cwd):
    """``None`` if user ``nobody`` can start ``python`` and import numpy and numba
    with ``env``; otherwise the reason, with the child's last line of stderr."""
    try:
        r = subprocess.run([str(SETPRIV), *NOBODY, python, "-c", "import numpy, numba"],
                           capture_output=True, text=True, env=env, timeout=120, cwd=cwd)
    except OSError as exc:  # setpriv itself cannot start
        return f"setpriv cannot run: {exc}"
    if r.returncode == 0:
        return None
    last = (r.stderr.strip().splitlines() or ["(no output)"])[-1]
    return (f"user nobody cannot run {python} with numpy and numba (a virtual environment "
            f"under a directory nobody may not read, such as root's home?): {last}")


def _readonly_install(tmp_path):
    """A copy of fastjac in a directory nobody cannot write, no writable home,
    NUMBA_CACHE_DIR read-only.  Returns (env, cwd, the read-only dir)."""
    site = tmp_path / "site"
    shutil.copytree(ROOT / "src" / "fastjac", site / "fastjac", ignore=shutil.ignore_patterns("__pycache__"))
    ro = tmp_path / "ro"
    ro.mkdir()
    for p in [tmp_path, site, ro, *site.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(ro / "nohome"), "NUMBA_CACHE_DIR": str(ro),
           "PYTHONPATH": str(site), "PYTHONDONTWRITEBYTECODE": "1"}
    return env, ro


@pytest.mark.slow
def test_cache_fallback_readonly_install(tmp_path):
    """Nothing writable, run as an unprivileged user: kernels compile without a cache."""
    if os.geteuid() != 0 or not SETPRIV.exists():
        pytest.skip("needs root and /usr/bin/setpriv to drop to user nobody")
    env, ro = _readonly_install(tmp_path)
    reason = nobody_can_run(sys.executable, env, str(ro))
    if reason:
        pytest.skip(reason)
    code = ("import numpy as np; from fastjac import nn; "
            "z=np.array([[1.0,2.0],[3.0,4.0]]); "
            "J=nn.softmax.jacobian(z, backend='numba'); "
            "assert J.shape==(2,2,2) and abs(J[0,0,0]-0.1049935854035065)<1e-12; print('ok')")
    r = subprocess.run([str(SETPRIV), *NOBODY, sys.executable, "-c", code], capture_output=True, text=True,
                       env=env, timeout=180, cwd=str(ro))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"
    assert not list(ro.iterdir())  # nothing could be cached


@pytest.mark.skipif(os.geteuid() != 0 or not SETPRIV.exists(), reason="needs root and /usr/bin/setpriv")
def test_precondition_check_names_an_interpreter_nobody_cannot_run(tmp_path):
    """The readonly-install test's skip reason, on an interpreter behind a 0700 directory."""
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o700)
    tmp_path.chmod(0o755)
    python = locked / "python"
    python.symlink_to(sys.executable)
    reason = nobody_can_run(str(python), {"PATH": "/usr/bin:/bin"}, str(tmp_path))
    assert reason is not None and str(python) in reason and "nobody" in reason


def test_docs_contain_generated_table():
    text = (ROOT / "docs" / "nn.md").read_text()
    assert nn.describe() in text, "docs/nn.md is stale: paste nn.describe() into it"
