"""Checks of the core objects: balanced factorization, layer gradients, losses and whitening, and the
library's runners against hand-written loops (THEORY.md §2, §3, §4, §7)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from overparam_jax.datasets import standardize_columns, whiten
from overparam_jax.dynamics import end_to_end_descent, gradient_descent, optax_descent
from overparam_jax.losses import lp_loss, overparameterized, whitened_l2_loss
from overparam_jax.networks import (
    balanced_factorization,
    balancedness,
    deficiency_margin,
    end_to_end,
    init_balanced,
    init_identity,
    layer_gradients,
)
from overparam_jax.preconditioner import preconditioner_apply
from overparam_jax.sweeps import sweep
from overparam_jax.verify.registry import Measurement, VerifyConfig, check_rng, mutant, normal, register

# (dims) cases: square, non-square, d_N = 1, hidden widths between min(d_0, d_N) and max.
_FACTORIZATION_DIMS = [
    (5, 5),
    (6, 4, 3),
    (7, 7, 7, 7),
    (8, 3, 5, 2),
    (9, 1, 1, 1),
    (10, 6, 4, 12, 5, 1),
    (4, 6, 6, 6, 6, 6, 3),
]


def _unbalanced_factorization(A, dims):
    """Exact product, but twice the mass in the first layer and half in the last."""
    params = balanced_factorization(A, dims)
    if len(params) == 1:
        return params
    return (2.0 * params[0],) + params[1:-1] + (0.5 * params[-1],)


def _wrong_root_factorization(A, dims):
    """Balanced, but every layer carries Sigma^{1/(N+1)}: the product is A's singular
    vectors with Sigma^{N/(N+1)}."""
    N = len(dims) - 1
    U, sigma, Vt = jnp.linalg.svd(A, full_matrices=False)
    return balanced_factorization((U * sigma[None, :] ** (N / (N + 1))) @ Vt, dims)


def _identity_ignoring_scale(dims, *, scale=1.0, dtype=None):
    return init_identity(dims, dtype=dtype)


@register(
    "balanced-factorization",
    section="§7",
    claim="Procedure 1 gives W_N...W_1 = A exactly and exactly balanced weights (depths 1-6); the identity "
    "init gives scale^N I, balanced",
    regime="7 shapes: square, non-square, d_N = 1, hidden widths between min(d_0, d_N) and max; identity "
    "init at depth 4, scale 1.7; relative errors, float64 round-off",
    threshold=1e-12,
    mutants=[
        mutant("unbalanced", "exact product, 2x the first layer and 1/2 x the last",
               factorize=_unbalanced_factorization),
        mutant("wrong-root", "Sigma^{1/(N+1)} per layer instead of Sigma^{1/N}",
               factorize=_wrong_root_factorization),
        mutant("identity-scale-ignored", "init_identity ignores its scale", identity=_identity_ignoring_scale),
    ],
)
def check_balanced_factorization(
    config: VerifyConfig, *, factorize=balanced_factorization, identity=init_identity
) -> Measurement:
    """max over cases of max(||W_e - A||, balancedness) / ||A||, float64; and the identity
    init's product against scale^N I."""

    @functools.partial(jax.jit, static_argnums=1)
    def errors(A, dims):
        params = factorize(A, dims)
        scale = jnp.linalg.norm(A)
        return jnp.linalg.norm(end_to_end(params) - A) / scale, balancedness(params) / scale

    rng = check_rng(config, 0)
    worst_product, worst_balance = 0.0, 0.0
    for dims in _FACTORIZATION_DIMS:
        product, balance = errors(normal(rng, (dims[-1], dims[0])), dims)
        worst_product, worst_balance = max(worst_product, float(product)), max(worst_balance, float(balance))
    scale, dims = 1.7, (3, 3, 3, 3, 3)
    layers = identity(dims, scale=scale, dtype=jnp.float64)
    identity_error = max(float(jnp.max(jnp.abs(end_to_end(layers) - scale**4 * jnp.eye(3)))) / scale**4,
                         float(balancedness(layers)))
    return Measurement(
        max(worst_product, worst_balance, identity_error),
        {"product_rel_error": worst_product, "balancedness_rel": worst_balance,
         "identity_init_error": identity_error, "cases": [list(d) for d in _FACTORIZATION_DIMS]},
    )


def _first_layer_one_percent_off(params, G):
    grads = layer_gradients(params, G)
    return (grads[0] * 1.01,) + grads[1:]


def _last_layer_sign_flipped(params, G):
    grads = layer_gradients(params, G)
    return grads[:-1] + (-grads[-1],)


@register(
    "layer-gradients",
    section="§2",
    claim="jax.grad of phi equals W_{N:j+1}^T grad_l(W_e) W_{j-1:1}^T for every layer",
    regime="l4 loss, depths 1-4, uneven widths incl. d_N = 1; relative error, float64 round-off",
    threshold=1e-12,
    mutants=[
        mutant("first-layer-1pc", "the first layer's gradient 1% too large",
               closed_form=_first_layer_one_percent_off),
        mutant("last-layer-sign", "the last layer's gradient with the wrong sign",
               closed_form=_last_layer_sign_flipped),
    ],
)
def check_layer_gradients(config: VerifyConfig, *, closed_form=layer_gradients) -> Measurement:
    """Relative gap between autodiff and the closed form, l4 loss, several shapes."""

    @jax.jit
    def gap(params, X, Y):
        loss_fn = functools.partial(lp_loss, X=X, Y=Y, p=4.0)
        auto = jax.grad(overparameterized(loss_fn))(params)
        hand = closed_form(params, jax.grad(loss_fn)(end_to_end(params)))
        return jnp.max(jnp.stack([jnp.linalg.norm(a - h) / jnp.linalg.norm(a) for a, h in zip(auto, hand)]))

    rng = check_rng(config, 1)
    worst = 0.0
    for dims in [(4, 3), (5, 2, 3), (6, 4, 4, 1), (3, 5, 2, 4, 2)]:
        X, Y = normal(rng, (20, dims[0])), normal(rng, (20, dims[-1]))
        params = tuple(normal(rng, (dims[j + 1], dims[j]), 1 / dims[j] ** 0.5) for j in range(len(dims) - 1))
        worst = max(worst, float(gap(params, X, Y)))
    return Measurement(worst, {"loss": "l4"})


# --------------------------------------------------------------------------------------
# Losses and whitening (THEORY.md §2)
# --------------------------------------------------------------------------------------


def _lp_reference(W, X, Y, p):
    """(1/m) sum_i ||W x_i - y_i||_p^p in NumPy (the definition, THEORY.md §2)."""
    R = np.asarray(X) @ np.asarray(W).T - np.asarray(Y)
    return float(np.sum(np.abs(R) ** p) / R.shape[0])


def _standardized_only(X, Y, **kwargs):
    """Centers and scales each column but does not decorrelate them (not whitening)."""
    from overparam_jax.datasets import Whitened, standardize_columns

    Xs = standardize_columns(np.asarray(X))
    Yc = np.asarray(Y) - np.asarray(Y).mean(axis=0)
    return Whitened(Xs, Yc, Yc.T @ Xs / Xs.shape[0], np.asarray(X).mean(axis=0), np.eye(X.shape[1]), 1.0)


def _standardize_sample_std(X):
    X = np.asarray(X)
    return (X - X.mean(axis=0)) / X.std(axis=0, ddof=1)


def _lp_mean_over_entries(W_e, X, Y, p=2.0, **kwargs):
    """Averages over every entry (m d_N) instead of over samples (m)."""
    return lp_loss(W_e, X, Y, p=p, **kwargs) / Y.shape[1]


def _whitened_without_half(W_e, Phi):
    return 2.0 * whitened_l2_loss(W_e, Phi)


@register(
    "losses-and-whitening",
    section="§2",
    claim="lp_loss equals (1/m) sum_i ||W x_i - y_i||_p^p (NumPy, p = 2, 2.5, 4; 1/p form); standardized "
    "columns have mean 0 and std 1; PCA whitening gives centered X_w with X_w^T X_w / m = I; and on whitened data "
    "l2(W) - 2 whitened_l2(W) is the same constant for every W (worst error)",
    regime="m = 60 correlated inputs (condition number ~100), d_0 = 4, d_N = 3, 8 random W; float64 round-off",
    threshold=1e-10,
    mutants=[
        mutant("standardized-not-whitened", "columns standardized but not decorrelated",
               whiten_data=_standardized_only),
        mutant("mean-over-entries", "l_p averaged over m d_N entries instead of m samples", lp=_lp_mean_over_entries),
        mutant("no-half", "whitened l2 without its 1/2", whitened=_whitened_without_half),
        mutant("sample-std", "columns scaled by the sample std (ddof = 1)", standardize=_standardize_sample_std),
    ],
)
def check_losses_and_whitening(
    config: VerifyConfig, *, lp=lp_loss, whiten_data=whiten, whitened=whitened_l2_loss,
    standardize=standardize_columns,
) -> Measurement:
    """Worst relative error of l_p against NumPy, of X_w^T X_w / m against I, and the spread
    of l2 - 2 whitened_l2 over random W relative to its mean size."""
    rng = check_rng(config, 40)
    m, d_0, d_N = 60, 4, 3
    mixing = np.diag([1.0, 3.0, 10.0, 0.1]) @ rng.standard_normal((d_0, d_0))
    X = jnp.asarray(rng.standard_normal((m, d_0)) @ mixing + 3.0, jnp.float64)  # not centered
    Y = normal(rng, (m, d_N))
    Ws = [normal(rng, (d_N, d_0)) for _ in range(8)]
    lp_errors = []
    for p, divide in ((2.0, False), (2.5, False), (4.0, False), (4.0, True)):
        for W in Ws[:3]:
            ref = _lp_reference(W, X, Y, p) / (p if divide else 1.0)
            lp_errors.append(abs(float(lp(W, X, Y, p=p, divide_by_p=divide)) / ref - 1))
    Xs = np.asarray(standardize(X))
    standardize_error = float(max(np.max(np.abs(Xs.mean(axis=0))), np.max(np.abs(Xs.std(axis=0) - 1))))
    data = whiten_data(np.asarray(X), np.asarray(Y))
    Xw, Yw, Phi = (jnp.asarray(a, jnp.float64) for a in (data.X, data.Y, data.Phi))
    identity_error = float(max(jnp.max(jnp.abs(Xw.T @ Xw / m - jnp.eye(Xw.shape[1]))),
                               jnp.max(jnp.abs(jnp.mean(Xw, axis=0)))))  # X_w^T X_w / m = I, centered
    gaps = np.array([float(lp(W, Xw, Yw, p=2.0) - 2 * whitened(W, Phi)) for W in Ws])
    scale = max(float(lp(W, Xw, Yw, p=2.0)) for W in Ws)
    constant_spread = float(np.ptp(gaps) / scale)
    return Measurement(
        max(max(lp_errors), identity_error, constant_spread, standardize_error),
        {"lp_max_rel_error": max(lp_errors), "whitening_identity_error": identity_error,
         "standardized_mean_std_error": standardize_error,
         "l2_minus_2_whitened_spread": constant_spread, "l2_minus_2_whitened_mean": float(gaps.mean())},
    )


# --------------------------------------------------------------------------------------
# The library's runners against a hand-written GD loop
# --------------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnums=(0, 4))
def _hand_gd(loss_fn, params, eta, lam, num_steps):
    """W_j <- W_j - eta (d phi / d W_j + lam W_j), a plain lax.scan (no library dynamics);
    returns the losses at t = 0..num_steps and the final W_e."""
    phi = overparameterized(loss_fn)

    def step(ps, _):
        grads = jax.grad(phi)(ps)
        return tuple(W - eta * (g + lam * W) for W, g in zip(ps, grads)), phi(ps)

    final, losses = jax.lax.scan(step, tuple(params), None, length=num_steps)
    return jnp.append(losses, phi(final)), end_to_end(final)


@functools.partial(jax.jit, static_argnums=(0, 5))
def _hand_end_to_end(loss_fn, W_e, depth, eta, lam, num_steps):
    """W_e <- W_e - eta (P_W grad l(W_e) + lam N W_e) with the (separately verified) P_W."""

    def step(W, _):
        G = jax.grad(loss_fn)(W)
        return W - eta * (preconditioner_apply(W, G, depth) + lam * depth * W), loss_fn(W)

    final, losses = jax.lax.scan(step, W_e, None, length=num_steps)
    return jnp.append(losses, loss_fn(final)), final


def _lr_axis_reversed(loss_fn, **kwargs):
    """A sweep whose learning rates are applied in the reverse order of its coordinates."""
    return sweep(loss_fn, **{**kwargs, "learning_rates": list(kwargs["learning_rates"])[::-1]})


def _weight_decay_ignored(run):
    """``run`` dropping its ``weight_decay`` argument."""

    def wrong(loss_fn, state, *args, weight_decay=0.0, **kwargs):
        return run(loss_fn, state, *args, **kwargs)

    return wrong


def _records_sigma_max(loss_fn, params, **kwargs):
    """gradient_descent whose trajectory records sigma_max(W_e) as its sigma_min."""
    traj = gradient_descent(loss_fn, params, **kwargs)
    return traj._replace(sigma_min=jnp.linalg.svd(traj.end_to_end, compute_uv=False)[..., 0])


def _doubled_updates(loss_fn, params, optimizer, **kwargs):
    """optax_descent applying each update twice."""
    return optax_descent(loss_fn, params, optax.chain(optimizer, optax.scale(2.0)), **kwargs)


def _relative_gap(losses, W_e, ref_losses, ref_W) -> float:
    """max of the worst relative loss gap over the records and the final W_e's relative gap."""
    return max(float(jnp.max(jnp.abs(losses - ref_losses) / jnp.abs(ref_losses))),
               float(jnp.max(jnp.linalg.norm(W_e - ref_W, axis=(-2, -1)) / jnp.linalg.norm(ref_W, axis=(-2, -1)))))


@functools.lru_cache(maxsize=4)
def _runner_loss(config: VerifyConfig):
    """The l4 problem, one object per config: the library's compiled loops are keyed by the
    loss object, so a mutant run recompiles only what its mutant changes."""
    rng = check_rng(config, 41)
    X, Y = normal(rng, (30, 3)), normal(rng, (30, 2))
    return functools.partial(lp_loss, X=X, Y=Y, p=4.0)


def _record_error(traj, loss_fn) -> float:
    """Worst relative error of a batch of trajectories' recorded loss, ||W_e||, sigma_min(W_e)
    against their definitions evaluated in NumPy on the recorded W_e, and of the final
    record's balancedness against the final layers."""
    W = np.asarray(traj.end_to_end)
    X, Y, p = (np.asarray(loss_fn.keywords[k]) for k in ("X", "Y", "p"))
    residual = np.einsum("...ij,mj->...mi", W, X) - Y
    definitions = {
        "loss": np.mean(np.sum(np.abs(residual) ** p, axis=-1), axis=-1),
        "norm": np.linalg.norm(W, axis=(-2, -1)),
        "sigma_min": np.linalg.svd(W, compute_uv=False)[..., -1],
    }
    errors = [np.max(np.abs(np.asarray(getattr(traj, k)) / v - 1)) for k, v in definitions.items()]
    layers = [np.asarray(L) for L in traj.final]
    gaps = [np.linalg.norm(np.swapaxes(b, -1, -2) @ b - a @ np.swapaxes(a, -1, -2), axis=(-2, -1))
            for a, b in zip(layers[:-1], layers[1:])]
    errors.append(np.max(np.abs(np.asarray(traj.balancedness)[..., -1] / np.max(gaps, axis=0) - 1)))
    return float(max(errors))


_RUNNER_TOL = 1e-12  # the same float64 arithmetic in another order: round-off only


@register(
    "runners-match-hand-written-gd",
    section="§3-§4",
    claim="gradient_descent (with weight decay), every cell of sweep (depths 1-3 padded to one program, "
    "seeds x learning rates), optax_descent(optax.sgd) and end_to_end_descent (weight decay, "
    "non-integer depth) equal hand-written lax.scan loops of W <- W - eta (grad + lam W) and "
    "W_e <- W_e - eta (P_W grad + lam N W_e), and a trajectory's recorded loss, ||W_e||, sigma_min "
    "and final balancedness equal their definitions: worst relative gap",
    regime="dims (3, h = 3, 2), l4 loss, 100 steps at eta = 0.02 and 0.05, lam = 0.05, balanced inits "
    "(std 0.5) from the sweep's keys; depth 2.5 for the update; float64 round-off",
    threshold=_RUNNER_TOL,
    mutants=[
        mutant("decay-ignored-by-gd", "gradient_descent ignores weight_decay",
               descend=_weight_decay_ignored(gradient_descent)),
        mutant("records-sigma-max", "trajectories record sigma_max(W_e) as sigma_min", descend=_records_sigma_max),
        mutant("sweep-lr-axis-reversed", "sweep applies its learning rates in reverse order",
               run_sweep=_lr_axis_reversed),
        mutant("optax-updates-doubled", "optax_descent applies each update twice", optax_run=_doubled_updates),
        mutant("decay-ignored-by-update", "end_to_end_descent ignores weight_decay",
               update=_weight_decay_ignored(end_to_end_descent)),
    ],
)
def check_runners(
    config: VerifyConfig, *, descend=gradient_descent, run_sweep=sweep, optax_run=optax_descent,
    update=end_to_end_descent,
) -> Measurement:
    """Each runner's losses and final end-to-end matrix against the hand-written loop
    (one compiled program per depth for the loops, vmapped over seeds and learning rates)."""
    loss = _runner_loss(config)
    steps, etas, lam, std, seeds, depths = 100, jnp.array([0.02, 0.05]), 0.05, 0.5, (0, 1), (1, 2, 3)
    grid = run_sweep(loss, input_dim=3, output_dim=2, hidden_width=3, depths=depths, seeds=seeds,
                     learning_rates=[float(e) for e in etas], init_stds=[std], num_steps=steps,
                     weight_decay=lam, record_end_to_end=True)
    gaps = {}
    for k, depth in enumerate(depths):
        dims = (3,) + (3,) * (depth - 1) + (2,)
        params = jax.vmap(lambda key: init_balanced(key, dims, std=std))(jax.vmap(jax.random.key)(jnp.asarray(seeds)))
        per_seed = jax.vmap(lambda p: jax.vmap(lambda e: _hand_gd(loss, p, e, lam, steps))(etas))
        ref_losses, ref_W = per_seed(params)  # (seed, eta, ...)
        cells = jax.tree_util.tree_map(lambda x: x[:, :, 0, k], grid.trajectory)
        gaps[f"sweep_depth_{depth}"] = _relative_gap(cells.loss, cells.end_to_end[:, :, -1], ref_losses, ref_W)
    first = jax.tree_util.tree_map(lambda x: x[0], params)  # depth 3, seed 0
    traj = jax.vmap(lambda e: descend(loss, first, learning_rate=e, num_steps=steps, weight_decay=lam,
                                      record_end_to_end=True))(etas)
    gaps["gradient_descent"] = _relative_gap(traj.loss, jax.vmap(end_to_end)(traj.final),
                                             ref_losses[0], ref_W[0])
    gaps["gradient_descent_records"] = _record_error(traj, loss)
    sgd_losses, sgd_W = _hand_gd(loss, first, etas[0], 0.0, steps)
    traj = optax_run(loss, first, optax.sgd(float(etas[0])), num_steps=steps)
    gaps["optax_sgd"] = _relative_gap(traj.loss, end_to_end(traj.final), sgd_losses, sgd_W)
    W_e = end_to_end(first)
    ref_losses, ref_W = _hand_end_to_end(loss, W_e, 2.5, etas[0], lam, steps)
    traj = update(loss, W_e, depth=2.5, learning_rate=etas[0], num_steps=steps, weight_decay=lam)
    gaps["end_to_end_descent"] = _relative_gap(traj.loss, traj.final, ref_losses, ref_W)
    return Measurement(max(gaps.values()), {"relative_gaps": gaps, "steps": steps})


# --------------------------------------------------------------------------------------
# The deficiency margin (THEORY.md §5, ACGH19 Definition 2 and Claim 1)
# --------------------------------------------------------------------------------------


def _margin_from_sigma_max(W_e, Phi):
    """sigma_max(Phi) - ||W_e - Phi||: the wrong end of the spectrum."""
    return jnp.linalg.svd(Phi, compute_uv=False)[0] - jnp.linalg.norm(W_e - Phi)


def _margin_squared_distance(W_e, Phi):
    """sigma_min(Phi) - ||W_e - Phi||^2: a squared distance in place of the distance."""
    return jnp.linalg.svd(Phi, compute_uv=False)[-1] - jnp.sum((W_e - Phi) ** 2)


@register(
    "deficiency-margin",
    section="§5",
    claim="ACGH19 Claim 1, tight: if W has deficiency margin c = sigma_min(Phi) - ||W - Phi||_F > 0, every W' "
    "with ||W' - Phi||_F <= ||W - Phi||_F has sigma_min(W') >= c, with equality at W' = Phi - "
    "||W - Phi|| u_min v_min^T. Measured: worst of |sigma_min(W'_extremal) / c - 1| and the largest "
    "shortfall (c - sigma_min(W')) / c over random W' on the sphere ||W' - Phi|| = ||W - Phi||",
    regime="square 3x3, wide 2x4 and tall 4x2 targets, W at distance 0.3 .. 0.8 sigma_min(Phi) from Phi, "
    "256 random W' per case; float64 round-off",
    threshold=1e-12,
    mutants=[
        mutant("sigma-max", "the margin measured from sigma_max(Phi)", margin=_margin_from_sigma_max),
        mutant("squared-distance", "the squared distance in place of the distance", margin=_margin_squared_distance),
    ],
)
def check_deficiency_margin(config: VerifyConfig, *, margin=deficiency_margin) -> Measurement:
    """The library's margin against Weyl's bound sigma_min(W') >= sigma_min(Phi) - ||W' - Phi||_2
    and its extremal point."""
    rng = check_rng(config, 42)
    worst_equality, worst_shortfall, rows = 0.0, 0.0, []
    for shape, fraction in (((3, 3), 0.3), ((2, 4), 0.5), ((4, 2), 0.8)):
        Phi = np.asarray(rng.standard_normal(shape))
        U, sigma, Vt = np.linalg.svd(Phi, full_matrices=False)
        E = rng.standard_normal(shape)
        W = Phi + fraction * sigma[-1] * E / np.linalg.norm(E)
        c = float(margin(jnp.asarray(W), jnp.asarray(Phi)))
        radius = np.linalg.norm(W - Phi)
        extremal = Phi - radius * np.outer(U[:, -1], Vt[-1])
        equality = abs(np.linalg.svd(extremal, compute_uv=False)[-1] / c - 1)
        directions = rng.standard_normal((256,) + shape)
        others = Phi + radius * directions / np.linalg.norm(directions, axis=(1, 2), keepdims=True)
        shortfall = max(0.0, float(np.max((c - np.linalg.svd(others, compute_uv=False)[:, -1]) / c)))
        worst_equality, worst_shortfall = max(worst_equality, equality), max(worst_shortfall, shortfall)
        rows.append({"shape": list(shape), "margin": c, "sigma_min_Phi": float(sigma[-1]),
                     "extremal_equality_error": float(equality), "random_shortfall": shortfall})
    return Measurement(max(worst_equality, worst_shortfall), {"cases": rows})
