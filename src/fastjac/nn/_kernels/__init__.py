"""Numba kernels of :mod:`fastjac.nn`, one module per rule family (compiled lazily, on first call).

:mod:`.activations` (elementwise, any shape), :mod:`.normalizers` (softmax
and log-softmax, canonical ``(n, B)`` layout) and :mod:`.losses` (fused
softmax cross-entropy).  Every kernel is serial and ``nogil`` (options in
:mod:`fastjac._jit`): no parallel kernels, so calling fastjac from threads,
executors or forked workers can neither crash nor hang.  Nothing here
imports Numba at module import time.
"""
from .activations import (SIGMOID, TANH, k_leaky_relu, k_neg_abs, k_piecewise_grad, k_relu_grad, k_sigmoid,
                          k_sigmoid_from_e, k_smooth_grad, k_smooth_grad_from)
from .losses import k_cross_entropy, k_cross_entropy_mean, k_mse, k_softmax_xent, k_softmax_xent_from_e
from .normalizers import (col_dot, col_max, col_sum, k_log_softmax, k_log_softmax_from_e,
                          k_log_softmax_jac_stack, k_log_softmax_vjp, k_log_softmax_vjp_from_e, k_softmax,
                          k_softmax_from_e, k_softmax_jac_stack, k_softmax_vjp, k_softmax_vjp_from_e, shift_exp,
                          sum_sq_diff)

__all__ = ["SIGMOID", "TANH", "col_dot", "col_max", "col_sum", "k_cross_entropy", "k_cross_entropy_mean",
           "k_leaky_relu", "k_log_softmax", "k_log_softmax_from_e", "k_log_softmax_jac_stack",
           "k_log_softmax_vjp", "k_log_softmax_vjp_from_e", "k_mse", "k_neg_abs", "k_piecewise_grad", "k_relu_grad",
           "k_sigmoid", "k_sigmoid_from_e", "k_smooth_grad", "k_smooth_grad_from", "k_softmax",
           "k_softmax_from_e", "k_softmax_jac_stack", "k_softmax_vjp", "k_softmax_vjp_from_e",
           "k_softmax_xent", "k_softmax_xent_from_e", "shift_exp", "sum_sq_diff"]
