"""Catch a broken backward pass while a small MLP trains.

A 2-layer tanh MLP (written with :mod:`fastjac.nn`, notebook layout: features
on axis 0, samples on axis 1) learns two interleaved spirals with mini-batch
SGD.  A :class:`fastjac.GradientMonitor` sits in the loop.  The script trains
twice: once with a correct backward pass (the monitor stays quiet), then with
a bug injected at step ``bug_step`` (``dW`` of one layer scaled by 0.5), which
the monitor reports at its next check, naming the parameter.

Run ``python examples/train_mlp.py`` (a few seconds); tests call
:func:`main` with small sizes.
"""
from __future__ import annotations

import argparse

import numpy as np

import fastjac
from fastjac import nn

PARAMS = ("W1", "b1", "W2", "b2")


def spirals(n, rng, dtype=np.float64, noise=0.15):
    """Two interleaved spirals: ``X`` (2, n), one-hot ``Y`` (2, n)."""
    half = n // 2
    t = np.sqrt(rng.random(half)) * 3.0
    arm = np.stack([t * np.cos(2.0 * t), t * np.sin(2.0 * t)])
    X = np.concatenate([arm, -arm], axis=1) + noise * rng.standard_normal((2, 2 * half))
    labels = np.repeat([0, 1], half)
    return X.astype(dtype), np.eye(2, dtype=dtype)[:, labels]


def init(rng, hidden, dtype):
    return {"W1": (rng.standard_normal((hidden, 2)) * 0.8).astype(dtype),
            "b1": np.zeros((hidden, 1), dtype),
            "W2": (rng.standard_normal((2, hidden)) / np.sqrt(hidden)).astype(dtype),
            "b2": np.zeros((2, 1), dtype)}


def loss(p, X, Y):
    """Mean softmax cross-entropy of the MLP on the batch ``(X, Y)``."""
    Z1 = nn.dense_forward(p["W1"], X, p["b1"])
    A1 = nn.tanh.forward(Z1)
    Z2 = nn.dense_forward(p["W2"], A1, p["b2"])
    return nn.softmax_cross_entropy.forward(Y, Z2)


def loss_and_grads(p, X, Y, scale_dW=None):
    """Forward and backward pass; ``scale_dW=("W1", 0.5)`` injects a bug."""
    Z1 = nn.dense_forward(p["W1"], X, p["b1"])
    A1 = nn.tanh.forward(Z1)
    Z2 = nn.dense_forward(p["W2"], A1, p["b2"])
    value, dZ2 = nn.softmax_cross_entropy.value_and_grad(Y, Z2)
    dW2, dA1, db2 = nn.dense_backward(p["W2"], A1, dZ2)
    dZ1 = nn.tanh.vjp(Z1, dA1)
    dW1, _, db1 = nn.dense_backward(p["W1"], X, dZ1)
    grads = {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}
    if scale_dW is not None:
        name, factor = scale_dW
        grads[name] = grads[name] * grads[name].dtype.type(factor)
    return value, grads


def train(*, steps, batch, hidden, lr, seed, dtype, every, bug=None, bug_step=None,
          on_fail="warn", log=print):
    """Train once; returns ``(monitor, reports, final_loss)``."""
    rng = np.random.default_rng(seed)
    X, Y = spirals(max(4 * batch, 256), rng, dtype)
    params = init(rng, hidden, dtype)
    reports = []

    def on_failure(report):
        reports.append(report)
        if on_fail == "raise":
            raise fastjac.monitor.GradientCheckError(report)

    monitor = fastjac.GradientMonitor(None, every=every, seed=seed, on_fail=on_failure)
    value = float("nan")
    for step in range(steps):
        idx = rng.choice(X.shape[1], batch, replace=False)
        xb, yb = X[:, idx], Y[:, idx]
        injected = (bug, 0.5) if bug is not None and step >= bug_step else None
        value, grads = loss_and_grads(params, xb, yb, injected)
        # The check must see the batch the gradient was computed on: pass a
        # closure over this step's batch.  Passing the loss value this step
        # computed makes the NaN/inf screen free (see docs/monitor.md).
        monitor(step, params, grads, loss_fn=lambda p, xb=xb, yb=yb: loss(p, xb, yb),
                loss=value)
        if reports and reports[-1].training_step == step and len(reports) == 1:
            r = reports[-1]
            log(f"  step {step:4d}: monitor FAILED, culprit {', '.join(r.culprits) or '?'}, "
                f"max rel error {r.max_rel_error:.3g}")
        if step % max(1, steps // 4) == 0:
            log(f"  step {step:4d}: loss {value:.4f}")
        params = {k: params[k] - params[k].dtype.type(lr) * grads[k] for k in PARAMS}
    return monitor, reports, value


def main(steps=400, batch=64, hidden=32, lr=0.5, seed=0, dtype="float64", every=25,
         bug="W1", bug_step=200, verbose=True):
    """Train with a correct, then a buggy backward pass; return what the monitor saw.

    Returns
    -------
    dict
        ``clean_failures`` (reports from the correct run, expected 0),
        ``caught_at`` (training step of the first failure in the buggy run,
        or None), ``culprits`` (parameters named), ``bug_step``, ``every``,
        ``clean_summary`` and ``buggy_summary`` (``monitor.summary()``).
    """
    log = print if verbose else (lambda *a, **k: None)
    dt = np.dtype(dtype).type
    opts = dict(steps=steps, batch=batch, hidden=hidden, lr=lr, seed=seed, dtype=dt, every=every,
                log=log)
    log(f"correct backward pass ({np.dtype(dtype).name}, check every {every} steps):")
    mon, clean, final = train(**opts)
    log(f"  final loss {final:.4f}; {mon.summary()['checks']} checks, {len(clean)} failures; "
        f"max rel error {mon.summary()['max_rel_error']:.2g}")
    log(f"backward pass with dW of {bug} scaled by 0.5 from step {bug_step}:")
    bmon, buggy, _ = train(bug=bug, bug_step=bug_step, **opts)
    caught = buggy[0].training_step if buggy else None
    culprits = list(buggy[0].culprits) if buggy else []
    if caught is None:
        log("  the monitor did NOT catch the bug")
    else:
        log(f"  caught at step {caught} ({caught - bug_step} steps after the bug), "
            f"culprit {culprits}")
    log(str(bmon.summary()))
    return {"clean_failures": len(clean), "caught_at": caught, "culprits": culprits,
            "bug_step": bug_step, "every": every, "clean_summary": mon.summary(),
            "buggy_summary": bmon.summary()}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    ap.add_argument("--bug", default="W1", choices=list(PARAMS))
    ap.add_argument("--every", type=int, default=25)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    main(steps=a.steps, dtype=a.dtype, bug=a.bug, every=a.every, seed=a.seed)
