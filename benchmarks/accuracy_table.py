"""Accuracy on the reference notebook's checks: max |numeric - analytic| per method.

Prints a markdown table (pasted into the README): one row per notebook check,
one column per way of computing the numeric Jacobian.  Not a timing
benchmark; runs in about a second::

    python benchmarks/accuracy_table.py
"""
from __future__ import annotations

import numpy as np

import fastjac
from fastjac._demo import notebook_checks
from fastjac.reference import numeric_jacobian


def _scipy(f, x):
    try:
        from scipy.optimize._numdiff import approx_derivative
    except ImportError:
        return None
    shape = x.shape
    out_shape = np.shape(f(x))
    J = approx_derivative(lambda v: f(v.reshape(shape)), x.reshape(-1), method="3-point")
    return np.asarray(J).reshape(out_shape + shape)


METHODS = {
    "notebook loop (h=1e-4)": lambda f, x: numeric_jacobian(x, f),
    "fastjac default (central, order 2)": lambda f, x: fastjac.jacobian(f, x),
    "fastjac order=4": lambda f, x: fastjac.jacobian(f, x, order=4),
    "fastjac method='complex'": lambda f, x: fastjac.jacobian(f, x, method="complex"),
    "scipy approx_derivative (3-point)": _scipy,
}


def table(seed=0):
    rows = []
    worst = dict.fromkeys(METHODS, 0.0)
    for check in notebook_checks(seed):
        cells = []
        for name, method in METHODS.items():
            J = method(check.f, check.x)
            if J is None:
                cells.append("n/a")
                continue
            err = float(np.max(np.abs(J - np.reshape(check.expected, J.shape))))
            worst[name] = max(worst[name], err)
            cells.append(f"{err:.1e}")
        rows.append(f"| {check.name.replace('  ', ' ')} | " + " | ".join(cells) + " |")
    head = "| notebook check | " + " | ".join(METHODS) + " |"
    rule = "|---|" + "---:|" * len(METHODS)
    total = "| **worst** | " + " | ".join(f"**{worst[m]:.1e}**" for m in METHODS) + " |"
    return "\n".join([head, rule, *rows, total])


if __name__ == "__main__":
    print(table())
