"""Independent NumPy/SciPy references for the end-to-end preconditioner (THEORY.md §4).

No overparam_jax imports. Every function follows the *definition* — the sum over
``j = 1..N`` of fractional powers of the Gram matrices — rather than the closed form
through Λ that the library uses; the eigenvalues Λ are summed term by term (integer N)
or evaluated in 50-digit decimal arithmetic (real N).
"""

from __future__ import annotations

import decimal

import numpy as np
import scipy.linalg


def gram_power(W, p, side):
    """[W W^T]^p (side="left") or [W^T W]^p (side="right") from NumPy's full SVD.

    The singular values are zero-padded to the Gram matrix's size and [A]^0 := I
    (also on the null space), so rank-deficient W is handled exactly.
    """
    W = np.asarray(W, dtype=np.float64)
    U, s, Vt = np.linalg.svd(W, full_matrices=True)
    if p == 0:
        n = W.shape[0] if side == "left" else W.shape[1]
        return np.eye(n)
    if side == "left":
        s_pad = np.zeros(W.shape[0])
        s_pad[: s.size] = s
        return (U * s_pad ** (2 * p)) @ U.T
    s_pad = np.zeros(W.shape[1])
    s_pad[: s.size] = s
    return (Vt.T * s_pad ** (2 * p)) @ Vt


def scipy_gram_power(W, p, side):
    """[W W^T]^p or [W^T W]^p by scipy.linalg.fractional_matrix_power (Schur-Padé).

    Only for full-rank Gram matrices (square, invertible W).
    """
    W = np.asarray(W, dtype=np.float64)
    A = W @ W.T if side == "left" else W.T @ W
    if p == 0:
        return np.eye(A.shape[0])
    return np.real(scipy.linalg.fractional_matrix_power(A, p))


def preconditioner_apply(W, G, N, power=gram_power):
    """P_W(G) = sum_j [W W^T]^{(j-1)/N} G [W^T W]^{(N-j)/N}, integer N, term by term."""
    G = np.asarray(G, dtype=np.float64)
    return sum(
        power(W, (j - 1) / N, "left") @ G @ power(W, (N - j) / N, "right")
        for j in range(1, N + 1)
    )


def preconditioner_matrix(W, N):
    """sum_j kron([W W^T]^{(j-1)/N}, [W^T W]^{(N-j)/N}) for row-major vec (np.kron)."""
    return sum(
        np.kron(gram_power(W, (j - 1) / N, "left"), gram_power(W, (N - j) / N, "right"))
        for j in range(1, N + 1)
    )


def eigenvalue(sigma_r, sigma_s, N):
    """Λ_rs = sum_j sigma_r^{2(j-1)/N} sigma_s^{2(N-j)/N}.

    Integer N: the sum of N positive terms in float64 (no cancellation, error ~ N eps).
    Real N: (sigma_r^2 - sigma_s^2) / (sigma_r^{2/N} - sigma_s^{2/N}) in 50-digit decimal
    arithmetic (N sigma^{2(N-1)/N} when they coincide).
    """
    if float(N).is_integer():
        N = int(N)
        terms = [sigma_r ** (2 * (j - 1) / N) * sigma_s ** (2 * (N - j) / N)
                 for j in range(1, N + 1)]
        return float(sum(terms))
    with decimal.localcontext() as ctx:
        ctx.prec = 50
        r, s, n = (decimal.Decimal(float(x)) for x in (sigma_r, sigma_s, N))

        def power(x, q):
            return decimal.Decimal(0) if x == 0 else (q * x.ln()).exp()

        if r == s:
            return float(n * power(r, 2 * (n - 1) / n))
        return float((r * r - s * s) / (power(r, 2 / n) - power(s, 2 / n)))


def eigenvalue_grid(W, N):
    """Λ for all (r, s), from NumPy's singular values zero-padded to (d_N, d_0)."""
    W = np.asarray(W, dtype=np.float64)
    s = np.linalg.svd(W, compute_uv=False)
    rows = np.zeros(W.shape[0])
    cols = np.zeros(W.shape[1])
    rows[: s.size] = s
    cols[: s.size] = s
    return np.array([[eigenvalue(a, b, N) for b in cols] for a in rows])


def product(matrices_input_first, n_in):
    """W_N ... W_1 (the identity of size n_in for an empty list)."""
    out = np.eye(n_in)
    for W in matrices_input_first:
        out = np.asarray(W, dtype=np.float64) @ out
    return out


def network_velocity(params, G, weight_decay=0.0):
    """dW_e/dt of gradient flow on the network, by the hand formula (THEORY.md §2):

    dW_j/dt = -(W_{N:j+1}^T G W_{j-1:1}^T + λ W_j),  dW_e/dt = sum_j W_{N:j+1} dW_j/dt W_{j-1:1}.
    """
    params = [np.asarray(W, dtype=np.float64) for W in params]
    G = np.asarray(G, dtype=np.float64)
    d_0 = params[0].shape[1]
    total = 0.0
    for j in range(len(params)):
        above = product(params[j + 1 :], params[j].shape[0])
        below = product(params[:j], d_0)
        dW = -(above.T @ G @ below.T + weight_decay * params[j])
        total = total + above @ dW @ below
    return total


def single_output_velocity(w, g, N):
    """-||w||^{2-2/N} (g + (N-1) (g.w/||w||^2) w) for a row vector w != 0."""
    w = np.asarray(w, dtype=np.float64).ravel()
    g = np.asarray(g, dtype=np.float64).ravel()
    norm2 = w @ w
    return -(norm2 ** (1 - 1 / N)) * (g + (N - 1) * (g @ w / norm2) * w)


def finite_difference_jacobian(f, W, step):
    """Central differences of f: R^{d_N x d_0} -> R^{d_N x d_0}, in row-major vec.

    Error O(step^2 f''') from truncation plus O(eps |f| / step) from round-off.
    """
    W = np.asarray(W, dtype=np.float64)
    n = W.size
    J = np.zeros((n, n))
    for b in range(n):
        E = np.zeros(n)
        E[b] = step
        E = E.reshape(W.shape)
        J[:, b] = (f(W + E) - f(W - E)).ravel() / (2 * step)
    return J


def lp_loss_gradient(W, X, Y, p):
    """Gradient of (1/m) sum_i ||W x_i - y_i||_p^p: (p/m) (|R|^{p-1} sign R)^T X."""
    W, X, Y = (np.asarray(a, dtype=np.float64) for a in (W, X, Y))
    R = X @ W.T - Y
    return (p * np.abs(R) ** (p - 1) * np.sign(R)).T @ X / X.shape[0]
