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
from pathlib import Path

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
from overparam_jax.analysis import first_hit, significant
from overparam_jax.checkpoint import CheckpointDir
from overparam_jax.cli import main
from overparam_jax.experiments import init_robustness as E
from overparam_jax.experiments.report import untraced_numbers
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
ROOT = Path(__file__).resolve().parents[1]
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


def test_balancedness_verdict_follows_the_runs(quick):
    """The verdict "balancedness stays small" is recomputed from the cells: the largest δ
    along each converged balanced cell's best run against BALANCED_DRIFT_MAX (fixed
    beforehand). Whatever it says, the balanced init starts balanced to float32 round-off
    and drifts an order of magnitude less than the layer-wise Gaussian init's imbalance at std 0.1."""
    _, doc = quick
    b, g = E.INITS.index("balanced"), E.INITS.index("gaussian")
    assert doc["balancedness_small"] == BALANCED_DRIFT_MAX
    flags, worst = [], 0.0
    std = np.asarray(doc["config"]["init_stds"])
    k = int(np.argmin(np.abs(std - 0.1)))
    for depth in (3, 8):
        shown = _cells(doc, depth, "max_balancedness_shown_run")[b]
        conv = _cells(doc, depth, "best_iterations")[b] >= 0
        small = int(np.sum(shown[conv] <= BALANCED_DRIFT_MAX))
        summary = doc["depths"][str(depth)]["balanced"]["balancedness"]
        assert (summary["cells_small"], summary["cells"]) == (small, int(conv.sum()))
        assert summary["max_along_best_runs"] == pytest.approx(shown[conv].max(), rel=5e-3)  # 3 digits
        flags.append(small == conv.sum())
        worst = max(worst, shown[conv].max())
        assert np.all(_cells(doc, depth, "balancedness_init")[b] < 1e-5)  # float32 round-off
        assert worst < 0.1 * _cells(doc, depth, "balancedness_init")[g, :, k].min()  # an order of magnitude
    verdict = {v["observation"]: v["verdict"] for v in doc["verdicts"]}
    assert verdict["balancedness stays small along the balanced runs"] == E._verdict(flags)


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
    ("fine_every", 7, "multiple of `fine_every`"),
    ("fine_steps", 30_000, "must be <= `max_steps`"),
    ("escape_dominance", 1.0, "escape_dominance"),
    ("validate_certified", -1, "validate_certified"),
    ("init_stds", (0.1, 0.01), "increase strictly"),
    ("seeds", (0, 0), "must not repeat"),
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
    """One line per depth and init with its converged cells counted from the result's own
    arrays, then the wall time."""
    _, result, _ = small
    lines = E.EXPERIMENT.summary_lines(result)
    d = result.depths[3]
    assert len(lines) == len(E.INITS) + 1
    for i, (init, line) in enumerate(zip(E.INITS, lines)):
        converged = int(np.sum(d.best_iterations[i] >= 0))
        assert line.startswith(f"depth 3 {init:9s}: converged in {converged} of {d.best_iterations[i].size} cells, ")
        predicted = E.predicted_escape_slope(init, 3)
        assert line.endswith(f"(predicted {float(significant(predicted, 3)):g})"), line
    assert lines[-1].startswith("wall time ")


@pytest.mark.parametrize("argv, message", [
    (["--steps", "0"], "--steps must be a positive integer, got 0"),
    (["--seeds", "-1"], "--seeds must be a positive integer, got -1"),
    (["--seeds", "0"], "--seeds must be a positive integer, got 0"),
])
def test_cli_user_errors_are_one_line_exit_2(argv, message, capsys, tmp_path):
    assert main(["reproduce", "init", "--out", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("overparam-jax: error:") and message in err[0]


# --------------------------------------------------------------------------------------
# The analysis against hand-computed inputs
# --------------------------------------------------------------------------------------

STDS = np.logspace(-4, 0, 9)  # half a decade per step


def test_windows_against_hand_made_outcomes():
    its = np.full((3, 9), -1)
    its[0, 2:6] = 100          # stds[2]..stds[5]: 1.5 decades, inside the grid
    its[1, [0, 1, 3]] = 100    # from the grid's lowest std, with a gap
    w = E._windows(STDS, its, seeds=(0, 1, 2))
    a, b, c = w["per_seed"]
    assert (a["low"], a["high"], a["width_decades"]) == (STDS[2], STDS[5], 1.5)
    assert not (a["below_grid"] or a["above_grid"]) and a["contiguous"]
    assert b["width_decades"] == 1.5 and b["below_grid"] and not b["contiguous"]
    assert c["width_decades"] is None and c["converged"] == 0
    assert (w["width_median"], w["width_min"], w["width_max"]) == (1.5, 1.5, 1.5)
    assert (w["seeds_with_window"], w["seeds_below_grid"], w["seeds_censored"]) == (2, 1, 1)
    assert w["every_seed"] is None and w["some_seed"] == [STDS[0], STDS[5]]
    assert w["grid_step_decades"] == 0.5 and w["grid_span_decades"] == 4.0


def test_escape_fit_recovers_a_planted_power_law():
    """time = 2 std^-2 + 5 (an escape ∝ std^-2 plus a fixed descent cost): the fit uses the
    stds whose time is >= 10x the fastest (7), i.e. 2 std^-2 >= 65, and its slope is that of
    an independent least-squares line (scipy) through exactly those points, within 10 % of -2."""
    from scipy.stats import linregress

    time_ = np.broadcast_to(2 * STDS ** -2.0 + 5, (3, 9)).copy()
    time_[2, 0] = np.nan  # one seed did not converge at the lowest std
    lr = np.full_like(time_, 0.1)
    e = E._escape_fit(STDS, time_, lr, init="gaussian", depth=4, dominance=10.0, max_steps=10**6, seeds=(0, 1, 2))
    use = 2 * STDS ** -2.0 + 5 >= 70
    x = np.concatenate([STDS[use]] * 3)[1:]  # seed 2 lacks the lowest std
    y = 2 * x ** -2.0 + 5
    ref = linregress(np.log(x), np.log(y))
    assert e["range"] == "escape-dominated" and e["points"] == x.size
    assert e["slope"] == pytest.approx(ref.slope, abs=6e-3) and -2.0 <= e["slope"] <= -1.8  # 3 digits
    assert e["fit_stds"] == [STDS[0], STDS[use][-1]] and e["predicted_slope"] == -2.0
    assert e["time_min"] == 7.0 and e["time_ratio_max"] == pytest.approx((2e8 + 5) / 7, rel=1e-3)
    # The lower edge: where the fitted line reaches lr x cap = 1e5.
    edge = math.exp((math.log(0.1 * 10**6) - ref.intercept) / ref.slope)
    assert e["lower_edge_extrapolated"] == pytest.approx(edge, rel=2e-3)
    assert e["lower_edge_learning_rate"] == 0.1


def test_escape_fit_falls_back_to_the_decreasing_branch_and_to_no_fit():
    flat = np.broadcast_to(3 + STDS ** -0.1, (2, 9)).copy()  # max/min < 10: escape never dominates
    e = E._escape_fit(STDS, flat, np.full_like(flat, 0.1), init="balanced", depth=3, dominance=10.0,
                      max_steps=1000, seeds=(0, 1))
    assert e["range"] == "decreasing branch" and e["points"] == 18
    from scipy.stats import linregress

    ref = linregress(np.log(np.tile(STDS, 2)), np.log(flat.ravel())).slope
    assert e["slope"] == pytest.approx(ref, rel=5e-3)
    assert e["lower_edge_extrapolated"] is None
    one = np.full((2, 9), np.nan)
    one[:, 4] = 12.0  # a single converged std: nothing to fit
    e = E._escape_fit(STDS, one, np.full_like(one, 0.1), init="gaussian", depth=8, dominance=10.0,
                      max_steps=1000, seeds=(0, 1))
    assert e["slope"] is None and e["points"] == 2 and e["predicted_slope"] == -6.0


def test_margin_outcomes_count_theorem1s_hypotheses():
    """Four cells: c > 0 converged within Theorem 1 (δ = 0, lr below η_max), c > 0 converged
    at a larger lr, c > 0 not converged, c < 0 converged."""
    from overparam_jax import theorem1_conditions

    margin = np.array([[0.5, 0.5, 0.2, -0.1]])
    conv = np.array([[True, True, False, True]])
    eta_max = theorem1_conditions(0.5, 1.0, 3).eta_max
    lr = np.array([[eta_max / 2, eta_max * 2, np.nan, 0.1]])
    m = E._margin_outcomes(margin, conv, STDS[:4], np.zeros((1, 4)), lr, phi_norm=1.0, depth=3)
    assert m["positive"] == {"converged": 2, "not_converged": 1}
    assert m["nonpositive"] == {"converged": 1, "not_converged": 0}
    assert m["theorem1_covered_converged"] == 1 and m["converged"] == 3
    assert m["nonpositive_converged_std_min"] == STDS[3] and m["theorem1_delta_met"] == 3
    assert m["theorem1_eta_max_largest"] == pytest.approx(eta_max, rel=1e-3)


def test_predicted_escape_slopes():
    assert [E.predicted_escape_slope("gaussian", n) for n in (2, 3, 8)] == [0.0, -1.0, -6.0]
    assert [E.predicted_escape_slope("balanced", n) for n in (3, 8)] == [-1 / 3, -0.75]
    with pytest.raises(ValueError, match="init"):
        E.predicted_escape_slope("orthogonal", 3)


# --------------------------------------------------------------------------------------
# The certificate, checked by running; the README paragraph
# --------------------------------------------------------------------------------------


def test_certified_runs_run_to_the_cap_never_reach_the_target(quick):
    _, doc = quick
    checked = 0
    for depth in QUICK.depths:
        check = doc["depths"][str(depth)]["certificate_check"]
        status = _runs(doc, depth, "status")
        assert len(check["checked"]) == min(QUICK.validate_certified, int(np.sum(status == "certified")))
        for r in check["checked"]:
            assert r["first_hit"] == -1 and r["ran_to"] == QUICK.max_steps
            assert r["certificate_ratio"] > QUICK.certificate_slack and r["certified_at"] < QUICK.max_steps
            assert r["lowest_loss"] > QUICK.target
            checked += 1
        assert check["converged"] == 0 and check["runs"] == len(check["checked"])
    assert checked >= 1, "no certified run was checked in --quick"


def _analysis_only(doc):
    """The document without its raw arrays (runs, cells, curves): the README's numbers must
    come from the configuration and the analysis, where a stray match is unlikely."""
    raw = ("runs", "cells", "curves")
    return {**{k: v for k, v in doc.items() if k != "depths"},
            "depths": {d: {k: v for k, v in x.items() if k not in raw} for d, x in doc["depths"].items()}}


def test_readme_paragraph_prints_only_numbers_of_the_document(quick):
    _, doc = quick
    text = E.readme_paragraph(doc)
    assert text.startswith("- `reproduce init` — ") and not text.endswith("\n")
    assert untraced_numbers(text, _analysis_only(doc), signed=True) == []
    b = doc["depths"]["3"]["balanced"]["convergence"]
    assert f"{b['cells_converged']}/{b['cells']} cells at depth 3" in text
    assert "| 8 | gaussian |" in text and "docs/figures/init_escape.png" in text
    # The check has power: a changed number is caught.
    wrong = text.replace(f"{doc['num_seeds']} independent seeds", "9173 independent seeds", 1)
    assert untraced_numbers(wrong, _analysis_only(doc), signed=True) == ["9173"]


def test_readme_block_is_the_paragraph_of_the_committed_json():
    path = ROOT / "docs" / "figures" / "init_results.json"
    document = json.loads(path.read_text())
    if "verdicts" not in document:
        pytest.skip("docs/figures/init_results.json predates issue #18 (one seed, no `verdicts`): the "
                    "README block is written from the full run's JSON once it is committed")
    readme = (ROOT / "README.md").read_text()
    begin, end = "<!-- init:begin -->\n", "\n<!-- init:end -->"
    assert readme.count(begin) == 1 and readme.count(end) == 1
    block = readme[readme.index(begin) + len(begin): readme.index(end)]
    assert block == E.readme_paragraph(document)
    assert untraced_numbers(block, _analysis_only(document), signed=True) == []
