"""E2: balanced vs layer-wise Gaussian init across depths (experiments/init_robustness.py).

One ``--quick`` run through the CLI is shared by the JSON tests. Independent references:
the no-convergence certificate against closed forms (depth 1, and aligned diagonal layers,
where it reduces to a scalar integral done by SciPy) and against random perturbations of
the partial products; the experiment's best learning rate and first hit against a fresh,
uninterrupted ``gradient_descent`` run; the deficiency margins (float64, from the sweep's
initial weights) against the sweep's own float32 loss at t = 0. A small grid checks the
chunked continuation: its progress, and an interrupted run resumed bit for bit.
"""

import functools
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import quad

from overparam_jax import (
    gradient_descent,
    init_balanced,
    init_gaussian,
    whitened_l2_loss,
)
from overparam_jax.analysis import first_hit
from overparam_jax.checkpoint import CheckpointDir
from overparam_jax.cli import main
from overparam_jax.experiments import init_robustness as E
from overparam_jax.runner import Progress

# The certificate's integral is a right-endpoint Riemann sum on a geometric grid of 1000
# points over 12 decades (ratio r = 10^(12/999) per step). G(δ) is a polynomial of degree
# <= 2N - 1, so across one step it grows by at most r^(2N-1): the sum is below the exact
# integral, by a relative amount of at most 1 - r^-(2N-1) (3 % at N = 1, 34 % at N = 8).
GRID_RATIO = 10 ** (12 / 999)


def certificate_rtol(depth):
    return 1 - GRID_RATIO ** -(2 * depth - 1)


# The sweep records the loss in float32 (eps 6e-8 on a loss of at most ~1e6 here);
# sqrt(2 ℓ) then carries a relative error ~1e-7. The margin is recomputed in float64.
FLOAT32_MARGIN_RTOL = 1e-5
FLOAT32_MARGIN_ATOL = 1e-6
# "Balancedness stays small" for balanced init: its weights start balanced to float32
# round-off and drift by O(η²) per step; at convergence ‖W_j‖² ≈ ‖Φ‖^(2/N) = 1, so 0.1 is
# 10 % of the weights' own scale. (Measured in --quick: ≈ 0.06.)
BALANCED_DRIFT_MAX = 0.1
QUICK = E.EXPERIMENT.configure(quick=True)
# A small grid whose runs stay open over several chunks (two of its four chunks run more
# than one run; one run is capped): the continuation's progress, checkpoint and resume.
SMALL = E.InitConfig(depths=(3,), init_stds=(0.01, 0.3), learning_rates=(0.003, 0.03),
                     max_steps=2100, fine_steps=100, chunk_steps=500, coarse_every=100)


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("init")
    status = main(["reproduce", "init", "--quick", "--no-progress", "--out", str(out)])
    assert status == 0
    with open(out / "init_results.json") as f:
        return out, json.load(f)


def _cells(doc, depth, key):
    return np.asarray(doc["depths"][str(depth)]["cells"][key], dtype=float)


def _runs(doc, depth, key):
    return np.asarray(doc["depths"][str(depth)]["runs"][key])


# --------------------------------------------------------------------------------------
# The --quick run: files and structure
# --------------------------------------------------------------------------------------


def test_quick_writes_every_output(quick):
    out, doc = quick
    for name in ("init_iterations.png", "init_balancedness.png", "init_margin.png",
                 "init_summary.md"):
        assert (out / name).stat().st_size > 1000, name
    summary = (out / "init_summary.md").read_text()
    assert "Paper vs measured" in summary and "float32" in summary
    assert doc["metadata"]["jax"] == jax.__version__ and doc["metadata"]["x64"] is True
    assert doc["margin_dtype"] == "float64"
    assert doc["problem"]["input_dim"] == 128
    assert doc["problem"]["phi_norm"] == pytest.approx(1.0, rel=1e-12)


def test_quick_arrays_have_the_grid_shapes(quick):
    _, doc = quick
    c = QUICK
    assert doc["config"]["max_steps"] == c.max_steps
    I, S, L, C = len(E.INITS), len(c.seeds), len(c.learning_rates), len(c.init_stds)
    assert set(doc["depths"]) == {str(d) for d in c.depths}
    for depth in c.depths:
        d = doc["depths"][str(depth)]
        for key in ("first_hit", "status", "stopped_at", "max_balancedness", "final_loss"):
            assert np.shape(d["runs"][key]) == (I, S, L, C), key
        for key in ("best_iterations", "margin_init", "loss_init", "balancedness_init"):
            assert np.shape(d["cells"][key]) == (I, S, C), key
        assert set(np.ravel(d["runs"]["status"])) <= set(E.STATUSES)
        assert len(d["curves"]) == I * S * C
        for curve in d["curves"]:
            assert curve["step"][0] == 0 and np.all(np.diff(curve["step"]) > 0)
            assert len(curve["loss"]) == len(curve["step"]) == len(curve["balancedness"])
        total = sum(sum(v.values()) for v in d["status_counts"].values())
        assert total == I * S * L * C


def test_best_learning_rate_is_the_earliest_first_hit_and_pruning_is_consistent(quick):
    _, doc = quick
    c = QUICK
    for depth in c.depths:
        first = _runs(doc, depth, "first_hit")
        status = _runs(doc, depth, "status")
        stopped = _runs(doc, depth, "stopped_at")
        best = _cells(doc, depth, "best_iterations")
        hits = np.where(first >= 0, first, np.inf).min(axis=2)
        np.testing.assert_array_equal(best, np.where(np.isfinite(hits), hits, -1))
        assert np.all((first >= 0) == (status == "converged"))
        assert np.all(stopped[status == "converged"] == first[status == "converged"])
        # A dominated run stopped no earlier than its cell's best hit, and had not hit yet.
        best_b = np.broadcast_to(best[:, :, None, :], first.shape)
        dominated = status == "dominated"
        assert np.all((best_b[dominated] >= 0) & (stopped[dominated] >= best_b[dominated]))
        assert np.all(stopped[status == "capped"] == c.max_steps)
        assert np.all(stopped <= c.max_steps)


def test_margins_match_the_sweeps_initial_loss(quick):
    """margin = σ_min(Φ) − ‖W_e(0) − Φ‖ with ‖W_e − Φ‖ = sqrt(2ℓ): the margins (float64, from
    the sweep's initial weights) vs the sweep's recorded t = 0 loss (float32, from its scan)."""
    _, doc = quick
    sigma = doc["problem"]["phi_sigma_min"]
    for depth in QUICK.depths:
        margin = _cells(doc, depth, "margin_init")
        from_loss = sigma - np.sqrt(2.0 * _cells(doc, depth, "loss_init"))
        np.testing.assert_allclose(margin, from_loss, rtol=FLOAT32_MARGIN_RTOL,
                                   atol=FLOAT32_MARGIN_ATOL)


# --------------------------------------------------------------------------------------
# What the experiment shows (dynamics, not construction)
# --------------------------------------------------------------------------------------


def test_depth8_tiny_std_balanced_converges_where_gaussian_is_stuck(quick):
    _, doc = quick
    b, g = E.INITS.index("balanced"), E.INITS.index("gaussian")
    best = _cells(doc, 8, "best_iterations")
    status = _runs(doc, 8, "status")
    assert best[b, 0, 0] > 0  # smallest std (1e-4): balanced converges
    assert best[g, 0, 0] == -1  # layer-wise Gaussian does not ...
    # ... and not by diverging: it stalls (vanishing gradients), certified or capped.
    assert set(status[g, 0, :, 0]) <= {"certified", "capped"}


def test_balanced_converges_at_every_std_and_gaussian_window_narrows_with_depth(quick):
    _, doc = quick
    b, g = E.INITS.index("balanced"), E.INITS.index("gaussian")
    conv = {d: _cells(doc, d, "best_iterations") >= 0 for d in (3, 8)}
    assert conv[3][b].all() and conv[8][b].all()
    assert 0 < conv[8][g].sum() < conv[3][g].sum()


def test_balancedness_stays_small_for_balanced_init(quick):
    _, doc = quick
    b, g = E.INITS.index("balanced"), E.INITS.index("gaussian")
    for depth in (3, 8):
        shown = _cells(doc, depth, "max_balancedness_shown_run")
        assert np.all(shown[b] < BALANCED_DRIFT_MAX), shown[b]
        # The layer-wise Gaussian init at std 0.1 starts far less balanced than that.
        std = np.asarray(doc["config"]["init_stds"])
        k = int(np.argmin(np.abs(std - 0.1)))
        assert _cells(doc, depth, "balancedness_init")[g, 0, k] > 10 * BALANCED_DRIFT_MAX


def test_a_continued_run_matches_an_uninterrupted_gradient_descent(quick):
    """The chunked continuation (sweep, then vmapped gradient_descent from its final state)
    against one plain gradient_descent from the regenerated init: same first hit, within
    one record (float32, differently compiled)."""
    _, doc = quick
    c = QUICK
    first = _runs(doc, 3, "first_hit")
    g = E.INITS.index("gaussian")
    late = np.argwhere(first[g, 0] > c.fine_steps)  # (lr, std) of runs that hit in phase 2
    assert late.size, "no Gaussian depth-3 run converged after the sweep in --quick"
    l, k = late[0]
    hit = int(first[g, 0, l, k])
    problem = E.EXPERIMENT.load(QUICK)
    loss_fn = functools.partial(whitened_l2_loss, Phi=jnp.asarray(problem.Phi, jnp.float32))
    dims = (128, 32, 32, 1)
    params = init_gaussian(jax.random.key(c.seeds[0]), dims,
                           std=jnp.float32(c.init_stds[k]), dtype=jnp.float32)
    every = c.coarse_every
    traj = gradient_descent(loss_fn, params, learning_rate=jnp.float32(c.learning_rates[l]),
                            num_steps=hit + every, save_every=every)
    fresh = first_hit(np.asarray(traj.step), np.asarray(traj.loss), c.target)
    assert abs(int(fresh) - hit) <= every


# --------------------------------------------------------------------------------------
# The no-convergence certificate
# --------------------------------------------------------------------------------------


def test_certificate_depth1_closed_form():
    """N = 1: G(δ) = ‖A‖ + δ + p, δ_* = p − ε − ‖A‖, τ = ln((2p − ε)/(‖A‖ + p))."""
    p, target = 1.0, 1e-5
    eps = math.sqrt(2 * target)
    A = np.zeros((1, 1, 7))
    A[0, 0, 2] = 0.3
    exact = math.log((2 * p - eps) / (0.3 + p))
    tau = E.escape_time_lower_bound([A], phi_norm=p, target=target)[0]
    assert (1 - certificate_rtol(1)) * exact <= tau <= exact


@pytest.mark.parametrize("depth", [2, 3, 8])
def test_certificate_aligned_layers_against_quad(depth):
    """Diagonal layers with a common top direction: ‖A_b⋯A_a‖ = u^(b−a+1), so
    F_{a..b}(δ) = (u + δ)^(b−a+1) and τ = ∫_0^{δ*} dδ / ((u+δ)^(N−1) ((u+δ)^N + p))."""
    p, target, u = 1.0, 1e-5, 0.2
    params = []
    for _ in range(depth):
        W = np.zeros((2, 4, 4))
        W[:, 0, 0], W[:, 1, 1] = u, u / 2
        params.append(W)
    d_star = (p - math.sqrt(2 * target)) ** (1 / depth) - u
    exact = quad(lambda d: 1 / ((u + d) ** (depth - 1) * ((u + d) ** depth + p)), 0, d_star,
                 limit=200)[0]
    tau = E.escape_time_lower_bound(params, phi_norm=p, target=target)
    assert np.all(tau <= exact) and np.all(tau >= (1 - certificate_rtol(depth)) * exact)


def test_partial_product_polynomials_bound_random_perturbations():
    rng = np.random.default_rng(0)
    dims = (6, 5, 4, 4, 1)
    N = len(dims) - 1
    A = [rng.normal(size=(1, dims[j + 1], dims[j])) * 0.7 for j in range(N)]
    m = E._partial_product_norms(A)
    for a in range(1, N + 1):
        F = E._chain_polynomials(m, a, N)
        for delta in (1e-3, 0.1, 1.0):
            for _ in range(20):
                W = [A[j][0] + delta * _unit_spectral(rng, A[j].shape[1:]) for j in range(N)]
                for b in range(a, N + 1):
                    P = np.linalg.multi_dot(W[a - 1:b][::-1]) if b > a else W[a - 1]
                    bound = E._polyval(F[b - a + 1], np.array([[delta]]))[0, 0]
                    assert np.linalg.norm(P, 2) <= bound * (1 + 1e-12)


def _unit_spectral(rng, shape):
    D = rng.normal(size=shape)
    return D / np.linalg.norm(D, 2)


def test_certificate_never_excludes_a_run_that_converged(quick):
    """Soundness on real runs: τ at init ≤ η × (first hit) for every converged run."""
    _, doc = quick
    c = QUICK
    problem = E.EXPERIMENT.load(QUICK)
    for depth in c.depths:
        dims = (128,) + (32,) * (depth - 1) + (1,)
        first = _runs(doc, depth, "first_hit")
        for i, init in enumerate(E.INITS):
            fn = {"balanced": init_balanced, "gaussian": init_gaussian}[init]
            stacked = [fn(jax.random.key(c.seeds[0]), dims, std=jnp.float32(s), dtype=jnp.float32)
                       for s in c.init_stds]
            params = [np.stack([np.asarray(p[j]) for p in stacked]) for j in range(depth)]
            tau = E.escape_time_lower_bound(params, phi_norm=1.0, target=c.target)
            for l, eta in enumerate(c.learning_rates):
                ok = first[i, 0, l] >= 0
                assert np.all(tau[ok] <= eta * first[i, 0, l][ok]), (depth, init, eta)
    assert problem.Phi.shape == (1, 128)


def test_certificate_rejects_an_unreachable_target():
    with pytest.raises(ValueError, match="must exceed sqrt"):
        E.escape_time_lower_bound([np.zeros((1, 1, 3))], phi_norm=1e-3, target=1.0)


# --------------------------------------------------------------------------------------
# The continuation through the runner: progress, checkpoint, resume
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small():
    """The small grid run once uninterrupted, with every Progress it reported."""
    data = E.EXPERIMENT.load(SMALL)
    seen = []
    return data, E.run_init_experiment(SMALL, data, progress=seen.append), seen


def test_progress_is_one_stage_per_depth_with_the_open_runs(small):
    _, result, seen = small
    d = result.depths[3]
    chunks = -(-(SMALL.max_steps - SMALL.fine_steps) // SMALL.chunk_steps)
    assert [p.done for p in seen] == [SMALL.chunk_steps * (k + 1) for k in range(chunks)]
    assert {(type(p), p.stage, p.total) for p in seen} == {(Progress, "depth 3", chunks * SMALL.chunk_steps)}
    open_runs = [p.metrics["open runs"] for p in seen]
    assert all(type(v) is float for v in open_runs) and open_runs == sorted(open_runs, reverse=True)
    # What is still open after the last chunk is what the cap settles, and more than one
    # run was open after the first chunk (the grid exercises the continuation).
    assert open_runs[-1] == np.sum(d.status == E.STATUSES.index("capped")) >= 1
    assert open_runs[0] > 1


def _assert_same_result(a, b):
    for depth, x in a.depths.items():
        y = b.depths[depth]
        for field in x._fields:
            if field == "curves":
                for cx, cy in zip(np.ravel(x.curves), np.ravel(y.curves)):
                    assert cx["lr_index"] == cy["lr_index"]
                    for key in ("step", "loss", "balancedness"):
                        np.testing.assert_array_equal(cx[key], cy[key])
            elif field != "seconds":
                np.testing.assert_array_equal(getattr(x, field), getattr(y, field), err_msg=field)


def test_an_interrupted_run_resumes_bit_for_bit(small, tmp_path):
    data, reference, _ = small

    def interrupt_after_two_chunks(p):
        if p.done >= 2 * SMALL.chunk_steps:
            raise KeyboardInterrupt

    folder = lambda: CheckpointDir(tmp_path, experiment="init", config=SMALL._asdict())
    with pytest.raises(KeyboardInterrupt):
        E.run_init_experiment(SMALL, data, progress=interrupt_after_two_chunks, checkpoint=folder())
    seen = []
    resumed = E.run_init_experiment(SMALL, data, progress=seen.append, checkpoint=folder())
    assert seen[0].done == 2 * SMALL.chunk_steps  # resumed after the second chunk, not redone
    _assert_same_result(reference, resumed)


# --------------------------------------------------------------------------------------
# Configuration, x64, validation, CLI errors
# --------------------------------------------------------------------------------------


def test_configure_maps_the_common_options():
    assert E.EXPERIMENT.configure(quick=False) == E.InitConfig()
    assert QUICK.max_steps == 20_000 and len(QUICK.init_stds) == 5 and len(QUICK.learning_rates) == 4
    c = E.EXPERIMENT.configure(quick=True, steps=500, seeds=3)
    assert (c.max_steps, c.fine_steps, c.seeds) == (500, 500, (0, 1, 2))
    assert E.EXPERIMENT.configure(quick=True, steps=30_000).fine_steps == QUICK.fine_steps
    assert E.EXPERIMENT.x64 and tuple(E.EXPERIMENT.common) == ("steps", "seeds")
    with pytest.raises(ValueError, match="`seeds`"):
        E.EXPERIMENT.configure(quick=True, seed=1)
    with pytest.raises(TypeError):
        E.EXPERIMENT.configure(quick=True, width=3)


def test_run_refuses_to_compute_the_float64_margins_without_x64():
    with jax.enable_x64(False), pytest.raises(RuntimeError, match="float64"):
        E.run_init_experiment(SMALL, problem=None)


@pytest.mark.parametrize("field, value, match", [
    ("fine_steps", 15, "multiple of `fine_every`"),
    ("chunk_steps", 150, "multiple of `coarse_every`"),
    ("learning_rates", (0.1, -1.0), "learning_rates"),
    ("depths", (1, 3), "depths"),
    ("max_steps", 0, "max_steps"),
    ("target", 0.0, "target"),
    ("certificate_slack", 0.5, "certificate_slack"),
    ("init_stds", (), "init_stds"),
])
def test_a_bad_config_is_refused_naming_the_field(field, value, match):
    with pytest.raises(ValueError, match=match):
        E.run_init_experiment(QUICK._replace(**{field: value}))


def test_non_integer_seeds_are_refused():
    with pytest.raises(TypeError, match="seeds"):
        E.run_init_experiment(QUICK._replace(seeds=(0.5,)))


def test_summary_lines(small):
    _, result, _ = small
    lines = E.EXPERIMENT.summary_lines(result)
    assert lines[0].startswith("depth 3 balanced : converged at ") and lines[0].endswith(" of 2 stds")
    assert lines[-1].startswith("wall time ")


@pytest.mark.parametrize("argv, message", [
    (["--steps", "0"], "--steps must be a positive integer, got 0"),
    (["--seeds", "-1"], "--seeds must be a positive integer, got -1"),
    (["--steps", "5"], "multiple of `fine_every`"),
])
def test_cli_user_errors_are_one_line_exit_2(argv, message, capsys, tmp_path):
    assert main(["reproduce", "init", "--out", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("overparam-jax: error:") and message in err[0]
