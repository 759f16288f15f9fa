"""Hand-written numpy layers in the forward/backward-pair convention of courses.

``forward(*inputs) -> (out, cache)`` and ``backward(dout, cache) -> grads``
(one gradient per input, in order), as CS231n-style assignments and
hand-written networks write them.  Each has a correct backward and the bugs
such layers ship with.
"""
from __future__ import annotations

import numpy as np


# --- dense + ReLU -----------------------------------------------------------
def dense_relu_forward(X, W, b):
    Z = X @ W + b
    return np.maximum(Z, 0), (X, W, Z)


def dense_relu_backward(dout, cache):
    X, W, Z = cache
    dZ = dout * (Z > 0)
    return dZ @ W.T, X.T @ dZ, dZ.sum(axis=0)


def dense_relu_backward_no_mask(dout, cache):  # the ReLU's mask forgotten
    X, W, Z = cache
    return dout @ W.T, X.T @ dout, dout.sum(axis=0)


def dense_relu_backward_db_mean(dout, cache):  # db averaged instead of summed
    dX, dW, db = dense_relu_backward(dout, cache)
    return dX, dW, db / dout.shape[0]


# --- convolution via im2col ----------------------------------------------------
def _im2col(x, k, pad):
    N, C, H, W = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    Ho, Wo = H + 2 * pad - k + 1, W + 2 * pad - k + 1
    cols = np.empty((N, C, k, k, Ho, Wo))
    for i in range(k):
        for j in range(k):
            cols[:, :, i, j] = xp[:, :, i:i + Ho, j:j + Wo]
    return cols.transpose(0, 4, 5, 1, 2, 3).reshape(N * Ho * Wo, C * k * k), (Ho, Wo)


def _col2im(cols, shape, k, pad, HoWo):
    N, C, H, W = shape
    Ho, Wo = HoWo
    cols = cols.reshape(N, Ho, Wo, C, k, k).transpose(0, 3, 4, 5, 1, 2)
    xp = np.zeros((N, C, H + 2 * pad, W + 2 * pad))
    for i in range(k):
        for j in range(k):
            xp[:, :, i:i + Ho, j:j + Wo] += cols[:, :, i, j]
    return xp[:, :, pad:pad + H, pad:pad + W]


def conv_forward(x, w, b, pad=1):
    F, C, k, _ = w.shape
    cols, (Ho, Wo) = _im2col(x, k, pad)
    out = cols @ w.reshape(F, -1).T + b
    out = out.reshape(x.shape[0], Ho, Wo, F).transpose(0, 3, 1, 2)
    return out, (x, w, cols, (Ho, Wo), pad)


def conv_backward(dout, cache):
    x, w, cols, HoWo, pad = cache
    F, C, k, _ = w.shape
    d2 = dout.transpose(0, 2, 3, 1).reshape(-1, F)
    dw = (d2.T @ cols).reshape(w.shape)
    db = d2.sum(axis=0)
    dx = _col2im(d2 @ w.reshape(F, -1), x.shape, k, pad, HoWo)
    return dx, dw, db


def conv_backward_flipped(dout, cache):  # the kernel's gradient transposed in space
    dx, dw, db = conv_backward(dout, cache)
    return dx, dw.transpose(0, 1, 3, 2), db


# --- batch normalisation (training mode) ----------------------------------------
def batchnorm_forward(x, gamma, beta, eps=1e-5):
    mu = x.mean(axis=0)
    var = x.var(axis=0)
    xhat = (x - mu) / np.sqrt(var + eps)
    return gamma * xhat + beta, (xhat, gamma, var, eps)


def batchnorm_backward(dout, cache):
    xhat, gamma, var, eps = cache
    N = dout.shape[0]
    dxhat = dout * gamma
    dx = (dxhat - dxhat.mean(axis=0) - xhat * (dxhat * xhat).mean(axis=0)) / np.sqrt(var + eps)
    return dx, (dout * xhat).sum(axis=0), dout.sum(axis=0)


def batchnorm_backward_no_mean_term(dout, cache):  # the mean's path through x forgotten
    xhat, gamma, var, eps = cache
    dxhat = dout * gamma
    dx = (dxhat - xhat * (dxhat * xhat).mean(axis=0)) / np.sqrt(var + eps)
    return dx, (dout * xhat).sum(axis=0), dout.sum(axis=0)


# --- an LSTM cell -------------------------------------------------------------------
def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def lstm_forward(x, h, c, Wx, Wh, b):
    H = h.shape[1]
    a = x @ Wx + h @ Wh + b
    i, f, o, g = _sigmoid(a[:, :H]), _sigmoid(a[:, H:2 * H]), _sigmoid(a[:, 2 * H:3 * H]), \
        np.tanh(a[:, 3 * H:])
    c_next = f * c + i * g
    h_next = o * np.tanh(c_next)
    return np.concatenate([h_next, c_next], axis=1), (x, h, c, Wx, Wh, i, f, o, g, c_next)


def lstm_backward(dout, cache, buggy=False):
    x, h, c, Wx, Wh, i, f, o, g, c_next = cache
    H = h.shape[1]
    dh_next, dc_next = dout[:, :H], dout[:, H:]
    t = np.tanh(c_next)
    do = dh_next * t
    dc = dc_next + dh_next * o * (1 - t ** 2)
    di, df, dg = dc * g, dc * c, dc * i
    dc_prev = dc * (1 if buggy else f)  # the forget gate's factor: the classic slip
    da = np.concatenate([di * i * (1 - i), df * f * (1 - f), do * o * (1 - o), dg * (1 - g ** 2)],
                        axis=1)
    return da @ Wx.T, da @ Wh.T, dc_prev, x.T @ da, h.T @ da, da.sum(axis=0)


def lstm_backward_forget_slip(dout, cache):
    return lstm_backward(dout, cache, buggy=True)


def layer_cases(rng):
    """name -> (forward, backward, {bug name: backward}, inputs, names)."""
    X = rng.normal(size=(8, 6))
    W, b = rng.normal(size=(6, 5)) / 3, rng.normal(size=5)
    x4 = rng.normal(size=(2, 3, 5, 5))
    w4, b4 = rng.normal(size=(4, 3, 3, 3)) / 3, rng.normal(size=4)
    xb = rng.normal(size=(10, 4)) * 2 + 1
    gamma, beta = rng.uniform(0.5, 1.5, 4), rng.normal(size=4)
    D, H, B = 3, 4, 5
    lx, lh, lc = rng.normal(size=(B, D)), rng.normal(size=(B, H)), rng.normal(size=(B, H))
    Wx, Wh, lb = rng.normal(size=(D, 4 * H)) / 2, rng.normal(size=(H, 4 * H)) / 2, rng.normal(size=4 * H)
    return {
        "dense+relu": (dense_relu_forward, dense_relu_backward,
                       {"no mask": dense_relu_backward_no_mask, "db mean": dense_relu_backward_db_mean},
                       (X, W, b), ("X", "W", "b")),
        "conv(im2col)": (conv_forward, conv_backward, {"flipped kernel": conv_backward_flipped},
                         (x4, w4, b4), ("x", "w", "b")),
        "batchnorm": (batchnorm_forward, batchnorm_backward,
                      {"no mean term": batchnorm_backward_no_mean_term},
                      (xb, gamma, beta), ("x", "gamma", "beta")),
        "lstm cell": (lstm_forward, lstm_backward, {"forget slip": lstm_backward_forget_slip},
                      (lx, lh, lc, Wx, Wh, lb), ("x", "h", "c", "Wx", "Wh", "b")),
    }
