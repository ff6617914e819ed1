"""Independent NumPy references for the core objects (no overparam_jax imports)."""

from __future__ import annotations

import numpy as np


def product(matrices_input_first):
    """W_N ... W_1 by a plain left-to-right loop in NumPy."""
    out = np.asarray(matrices_input_first[0])
    for W in matrices_input_first[1:]:
        out = np.asarray(W) @ out
    return out


def layer_gradient(params, grad_W_e, j):
    """dphi/dW_j = W_{N:j+1}^T G W_{j-1:1}^T for 0-based layer index j (THEORY.md §2)."""
    params = [np.asarray(W) for W in params]
    d_out, d_in = params[j].shape
    above = product(params[j + 1 :]) if j + 1 < len(params) else np.eye(params[-1].shape[0])
    below = product(params[:j]) if j > 0 else np.eye(params[0].shape[1])
    return above.T @ np.asarray(grad_W_e) @ below.T


def lp_loss(W, X, Y, p, divide_by_p=False):
    """(1/m) sum_i sum_k |(W x_i - y_i)_k|^p, sample by sample."""
    W, X, Y = map(np.asarray, (W, X, Y))
    total = sum(np.sum(np.abs(W @ x - y) ** p) for x, y in zip(X, Y)) / X.shape[0]
    return total / p if divide_by_p else total


def lp_loss_gradient(W, X, Y, p):
    """Gradient of the ℓp loss: (1/m) sum_i p |r_i|^{p-1} sign(r_i) x_i^T."""
    W, X, Y = map(np.asarray, (W, X, Y))
    R = X @ W.T - Y
    return (p * np.abs(R) ** (p - 1) * np.sign(R)).T @ X / X.shape[0]


def gd_step(params, X, Y, p, eta):
    """One hand-written GD step on φ with the ℓp loss: W_j - η W_{N:j+1}^T ∇ℓ W_{j-1:1}^T."""
    G = lp_loss_gradient(product(params), X, Y, p)
    return [np.asarray(W) - eta * layer_gradient(params, G, j) for j, W in enumerate(params)]


def balance_differences(params):
    """D_j = W_{j+1}^T W_{j+1} - W_j W_j^T for j = 1..N-1 (NumPy)."""
    params = [np.asarray(W) for W in params]
    return [params[j + 1].T @ params[j + 1] - params[j] @ params[j].T for j in range(len(params) - 1)]


def solve_gradient_flow(grad_fn, params, t_final, rtol=1e-12, atol=1e-14):
    """Integrate dθ/dt = -∇φ(θ) with SciPy's adaptive DOP853; returns the final layers."""
    from scipy.integrate import solve_ivp

    shapes = [np.shape(W) for W in params]
    sizes = [int(np.prod(s)) for s in shapes]

    def unflatten(theta):
        out, k = [], 0
        for shape, size in zip(shapes, sizes):
            out.append(theta[k : k + size].reshape(shape))
            k += size
        return out

    def rhs(_, theta):
        return -np.concatenate([np.ravel(g) for g in grad_fn(unflatten(theta))])

    theta0 = np.concatenate([np.ravel(W) for W in params])
    sol = solve_ivp(rhs, (0.0, t_final), theta0, method="DOP853", rtol=rtol, atol=atol)
    assert sol.success, sol.message
    return unflatten(sol.y[:, -1])
