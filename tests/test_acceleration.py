"""E1: acceleration by depth on the gas-sensor data (experiments/acceleration.py).

One ``--quick`` run through the CLI is shared by the JSON tests. Independent references:
ℓ* against SciPy (least squares by another LAPACK driver; BFGS on ℓ4 with NumPy gradients)
and the audit's values of issue #18; the first records of GD on the depth-2 network, of the
end-to-end update and of every optimizer against hand-written iterations (NumPy gradients,
tests/references*.py; plain optax on the unpadded network); ℓ2 from the moments vs
``lp_loss`` (value and gradient); the linear model's stability edge η < 1/λ_max(XᵀX/m) for
ℓ2 by NumPy; excess losses, first hits and crossovers recomputed from the stored curves by
plain loops; the rate choice of the protocol on hand-made verdicts. Small runs check the
own-lr variant (the linear model at its own rate against hand-written NumPy GD), an
edge-of-stability variant through every report (figures on a log scale, the README
paragraph), the progress stages and a resume from an interrupted checkpoint, bit for bit.
"""

import functools
import json
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.linalg
import scipy.optimize

from overparam_jax import init_balanced, load_gas_ethanol, lp_loss
from overparam_jax.analysis import crossover_step, max_rise
from overparam_jax.checkpoint import CheckpointDir
from overparam_jax.cli import main
from overparam_jax.experiments import acceleration as A
from overparam_jax.experiments import get_experiment
from overparam_jax.experiments.report import untraced_numbers
from overparam_jax.runner import Progress
from tests import references, references_preconditioner

ROOT = Path(__file__).resolve().parents[1]
# float64 algebraic identities (moments vs residuals, two closed forms of P_W): round-off of
# sums of ~1e3 terms of size O(1), relative.
FLOAT64_IDENTITY_RTOL = 1e-10
# 2(W C − B) vs 2 (XW − Y)ᵀX/m: entries are differences of sums of size |C||W| ~ 10 that
# nearly cancel (cond(C) ~ 5e9), so a few digits more than the loss itself are lost.
FLOAT64_GRADIENT_RTOL = 1e-8
# ℓ* by two solvers in float64: the minimum value is flat to second order in W, so values
# agree to ~cond · eps² even where the minimizers differ; BFGS stops at ~1e-12 relative.
MINIMUM_RTOL = 1e-9
# The experiment trains in float32 (eps 6e-8); a loss is a mean of 2565 terms, so its
# float32 value differs from the float64 one by ~1e-6 relative. 1e-4 leaves headroom for
# the drift of the weights that produced it (they are re-evaluated exactly).
FLOAT32_LOSS_RTOL = 1e-4
# Balanced init in float32: |W_j|^2 products of size |W_e|^(2/N) ~ 0.2, eps-level gaps.
FLOAT32_BALANCE_ATOL = 1e-6
# The JSON stores curves to 6 significant digits; summaries are computed before rounding.
JSON_RTOL = 1e-5
# The experiment's float32 runs vs float64 hand-written iterations over 100 steps from the
# same init: each loss is a mean of 2565 float32 terms (~1e-6 relative), and the weights
# carry float32 round-off of every step forward.
FLOAT32_TRAJECTORY_RTOL = 1e-4

QUICK = A.configure(quick=True)
# A small run (seconds): ℓ2 from a large init, where depth 2 diverges at the linear model's
# largest stable rate 1e-2: every depth runs at 3.162e-3, and depths 1 and 3 also at their
# own largest stable rate 1e-2 (variant "own lr", 2 seeds).
SMALL = QUICK._replace(
    losses=("l2",), optimizer_losses=(), extra_depths=(), end_to_end_depths=(2,), seeds=(0, 1),
    lr_grid=(1e-3, 3.162e-3, 1e-2), stability_candidates=3, init_std=0.3, variant_seeds=2,
    num_steps=100, save_every=10, pilot_steps=100, stability_steps=100,
)
# Both losses at the small size, for the edge-of-stability variant (forced, see below).
EDGE = SMALL._replace(losses=("l2", "l4"), lr_grid=(1e-6, 1e-5, 1e-4, 1e-3, 3.162e-3, 1e-2), stability_candidates=6)


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("acceleration")
    status = main(["reproduce", "acceleration", "--quick", "--no-progress", "--out", str(out)])
    assert status == 0
    with open(out / "acceleration_results.json") as f:
        return out, json.load(f)


@pytest.fixture(scope="module")
def data():
    return load_gas_ethanol(standardize=True)


@pytest.fixture(scope="module")
def small(data):
    """The small run, uninterrupted, and the progress it reported."""
    reports = []
    return A.run_acceleration_experiment(SMALL, data, progress=reports.append), reports


@pytest.fixture(scope="module")
def edge(data, tmp_path_factory):
    """A run of ``EDGE`` in which pilot B's edge-of-stability rate is forced to the largest rate
    it tried whenever that is above the one lr (ℓ2: 1e-2, where depth 2 diverges — the report
    must carry a variant with diverged runs), and its written outputs."""
    original = A._choose_rates

    def forced(tried, depths, stable, decreasing):
        rates = original(tried, depths, stable, decreasing)
        top = max(tried)
        return rates | {"lr_edge_of_stability": top if top > rates["lr_gd"] else None}

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(A, "_choose_rates", forced)
        result = A.run_acceleration_experiment(EDGE, data)
    out = tmp_path_factory.mktemp("acceleration_edge")
    A.EXPERIMENT.write_outputs(result, out)
    with open(out / "acceleration_results.json") as f:
        return result, out, json.load(f)


def _balanced_init(seed: int, depth: int, std: float) -> list[np.ndarray]:
    """The experiment's init of one run (drawn in float32), in float64."""
    init = init_balanced(jax.random.key(seed), (128,) + (1,) * depth, std=std, dtype=jnp.float32)
    return [np.asarray(W, np.float64) for W in init]


# --------------------------------------------------------------------------------------
# The global minima
# --------------------------------------------------------------------------------------


def test_l2_minimum_matches_scipy_least_squares_and_the_audit(data):
    X, Y = data
    m = A.lp_minimum(X, Y, 2.0)
    w = scipy.linalg.lstsq(X, Y.reshape(-1), lapack_driver="gelsy")[0]
    assert m.value == pytest.approx(np.mean((X @ w - Y.reshape(-1)) ** 2), rel=MINIMUM_RTOL)
    assert m.iterations == 0 and m.gradient_norm < 1e-10
    assert round(m.value, 4) == 0.0611  # issue #18's audit: l2* ~ 0.0611 (least squares)


def test_l4_minimum_matches_bfgs_and_the_audit(data):
    X, Y = data
    m = A.lp_minimum(X, Y, 4.0)
    y = Y.reshape(-1)
    res = scipy.optimize.minimize(
        lambda w: np.mean((X @ w - y) ** 4), np.linalg.lstsq(X, y, rcond=None)[0],
        jac=lambda w: references.lp_loss_gradient(w[None, :], X, Y, 4.0).reshape(-1),
        method="BFGS", options={"gtol": 1e-12, "maxiter": 20_000})
    assert m.value == pytest.approx(res.fun, rel=MINIMUM_RTOL)
    assert m.value <= res.fun * (1 + 1e-12)  # Newton's method is no worse than BFGS
    assert m.value == pytest.approx(references.lp_loss(m.W, X, Y, 4.0), rel=FLOAT64_IDENTITY_RTOL)
    gradient = references.lp_loss_gradient(m.W, X, Y, 4.0)
    assert np.linalg.norm(gradient) == pytest.approx(m.gradient_norm, rel=1e-3, abs=1e-13)
    assert m.gradient_norm < 1e-10 and 0 < m.iterations < 100
    assert round(m.value, 4) == 0.0642  # issue #18's audit: l4* ~ 0.0642 (no 1/p factor)
    # Not the least-squares solution: l4 there is higher.
    w_ls = np.linalg.lstsq(X, y, rcond=None)[0]
    assert references.lp_loss(w_ls[None, :], X, Y, 4.0) > m.value * (1 + 1e-3)


@pytest.mark.parametrize(
    ("X", "Y", "p", "match"),
    [
        (np.ones(3), np.ones(3), 2.0, r"`X` must have shape \(m, d_0\)"),
        (np.ones((3, 2)), np.ones((4, 1)), 2.0, r"`Y` must have shape \(3, 1\)"),
        (np.ones((3, 2)), np.ones(3), 1.5, r"`p` must be >= 2"),
    ],
)
def test_lp_minimum_refuses_bad_input(X, Y, p, match):
    with pytest.raises(ValueError, match=match):
        A.lp_minimum(X, Y, p)


# --------------------------------------------------------------------------------------
# Shared helpers this experiment measures with (against plain loops)
# --------------------------------------------------------------------------------------


def _crossover_loop(steps, a, b):
    """The first step from which a < b at every later record, by a backward loop (-1: never)."""
    start = None
    for k in range(len(steps) - 1, -1, -1):
        if not a[k] < b[k]:
            break
        start = steps[k]
    return -1 if start is None else start


def _rise_loop(v):
    low, rise = np.inf, 0.0
    for x in v:
        if not np.isfinite(x):
            return np.inf
        low = min(low, x)
        rise = max(rise, x / low - 1)
    return rise


def test_crossover_step_and_max_rise_match_plain_loops():
    rng = np.random.default_rng(0)
    steps = np.arange(12) * 5
    # Random walks that cross each other a few times, and some that never end below.
    a = np.cumsum(rng.normal(size=(40, 12)), axis=-1)
    b = np.cumsum(rng.normal(size=(40, 12)), axis=-1)
    got = crossover_step(steps, a, b)
    assert got.tolist() == [_crossover_loop(steps, x, y) for x, y in zip(a, b)]
    assert {-1, 0} < set(got.tolist())  # the cases "never" and "from the start" both occur
    v = np.exp(a / 3)
    v[3, 5] = np.nan
    assert np.allclose(max_rise(v), [_rise_loop(x) for x in v])


@pytest.mark.parametrize(
    ("stable", "decreasing", "expected"),
    [
        # The largest rate stable for every depth; depth 1 alone is stable at the top rate;
        # every depth decreases at the top rate: the edge of stability.
        ([[True, False], [True, False], [True, True]], [[True, True], [True, False], [True, True]],
         (1e-4, True, {"1": 1e-2, "2": 1e-4}, 1e-2)),
        # Nothing stable for every depth: the smallest rate tried, flagged; no edge above it.
        ([[True, False], [False, False], [True, False]], [[True, False], [False, False], [True, False]],
         (1e-4, False, {"1": 1e-2, "2": None}, None)),
        # The top rate stable for all: no edge (an edge is only reported above the one lr).
        ([[True, True], [True, True], [True, True]], [[True, True], [True, True], [True, True]],
         (1e-2, True, {"1": 1e-2, "2": 1e-2}, None)),
    ],
)
def test_pilot_b_rates_follow_the_protocol(stable, decreasing, expected):
    r = A._choose_rates([1e-2, 1e-3, 1e-4], [1, 2], stable, decreasing)
    assert (r["lr_gd"], r["lr_gd_stable_in_pilot"], r["lr_own"], r["lr_edge_of_stability"]) == expected


# --------------------------------------------------------------------------------------
# The --quick run: files, shapes, finiteness
# --------------------------------------------------------------------------------------


def test_quick_writes_every_output(quick):
    out, doc = quick
    for name in ("acceleration_depths.png", "acceleration_extra_depths.png",
                 "acceleration_optimizers.png", "acceleration_summary.md"):
        assert (out / name).stat().st_size > 1000, name
    summary = (out / "acceleration_summary.md").read_text()
    assert "standardized" in summary and "float32" in summary and "excess loss" in summary
    assert doc["schema"] == A.SCHEMA and doc["dtype"] == "float32"
    assert "standardized" in doc["data"]["preprocessing"]
    assert "no 1/p" in doc["loss_form"]
    assert doc["metadata"]["jax"] == jax.__version__  # write_json adds versions
    assert doc["config"] == json.loads(json.dumps(QUICK._asdict()))


def test_quick_curves_have_the_configured_shapes_and_are_finite(quick):
    _, doc = quick
    c = QUICK
    T = c.num_steps // c.save_every + 1
    assert doc["steps"] == list(range(0, c.num_steps + 1, c.save_every))
    assert set(doc["curves"]) == {"l2", "l4"}
    for name, curves in doc["curves"].items():
        expected = {f"gd_depth_{d}" for d in c.depths + c.extra_depths}
        expected |= {f"end_to_end_d{d}" for d in c.end_to_end_depths}
        if name in c.optimizer_losses:
            expected |= {"adagrad_d1", "adadelta_d1", "adam_d1", "adam_d3"}
        assert expected <= set(curves), name
        for key, curve in curves.items():
            if key.startswith("gd_depth_"):
                depth = int(key.split("_")[2])
                seeds = len(c.seeds) if depth in c.depths else c.extra_seeds
            else:
                seeds = c.baseline_seeds
            loss = np.asarray(curve["loss"], dtype=float)
            assert loss.shape == (seeds, T), key
            assert np.all(np.isfinite(loss)), key
        for d in c.depths:  # the chosen lr is stable for the main depths in the quick run
            assert curves[f"gd_depth_{d}"]["diverged_at"] == [-1] * len(c.seeds)


def test_every_method_starts_from_the_same_end_to_end_matrix(quick):
    # Balanced init from the same key gives the same W_e(0) at every depth, so the
    # recorded losses at t = 0 agree across depths and methods for each seed.
    _, doc = quick
    for curves in doc["curves"].values():
        first = {key: [row[0] for row in curve["loss"]] for key, curve in curves.items()}
        ref = first["gd_depth_1"]
        for key, values in first.items():
            np.testing.assert_allclose(values, ref[: len(values)], rtol=1e-6, err_msg=key)


@pytest.mark.parametrize("name", ["l2", "l4"])
def test_first_records_follow_hand_written_numpy_iterations(quick, data, name):
    # GD on the depth-2 network and the discrete end-to-end update of depth 2, at the
    # recorded lr, from seed 0's balanced init: 100 float64 steps by hand vs the run.
    _, doc = quick
    c = QUICK
    X, Y = data
    p = A.LOSSES[name]
    lr = doc["protocol"][name]["lr_gd"]
    params = _balanced_init(c.seeds[0], 2, c.init_std)
    W_e = references.product(params)
    k = 100 // c.save_every
    for _ in range(k * c.save_every):
        params = references.gd_step(params, X, Y, p, lr)
        g = references.lp_loss_gradient(W_e, X, Y, p)
        W_e = W_e + lr * references_preconditioner.single_output_velocity(W_e, g, 2).reshape(W_e.shape)
    curves = doc["curves"][name]
    np.testing.assert_allclose(curves["gd_depth_2"]["loss"][0][k],
                               references.lp_loss(references.product(params), X, Y, p),
                               rtol=FLOAT32_TRAJECTORY_RTOL)
    np.testing.assert_allclose(curves["end_to_end_d2"]["loss"][0][k], references.lp_loss(W_e, X, Y, p),
                               rtol=FLOAT32_TRAJECTORY_RTOL)


@pytest.mark.parametrize(("key", "optimizer"), [("adagrad_d1", optax.adagrad), ("adadelta_d1", optax.adadelta),
                                                ("adam_d1", optax.adam), ("adam_d3", optax.adam)])
def test_optimizer_curves_follow_plain_optax_on_the_unpadded_network(quick, data, key, optimizer):
    # The experiment runs each optimizer as a sweep (learning rate injected into its state,
    # the linear model padded beside depth 3, frozen layers masked). Reference: the plain
    # optax optimizer at the recorded rate on the unpadded depth-N network, with NumPy layer
    # gradients, in float64, from seed 0's init; every record of the first 100 steps.
    _, doc = quick
    c = QUICK
    X, Y = data
    curve = doc["curves"]["l4"][key]
    depth, lr = curve["depth"], curve["learning_rate"]
    assert lr == doc["protocol"]["l4"]["optimizers"]["chosen"][key]
    params = _balanced_init(c.seeds[0], depth, c.init_std)
    opt = optimizer(lr)
    state = opt.init(params)
    k = 100 // c.save_every
    expected = [references.lp_loss(references.product(params), X, Y, 4.0)]
    for step in range(1, k * c.save_every + 1):
        G = references.lp_loss_gradient(references.product(params), X, Y, 4.0)
        grads = [references.layer_gradient(params, G, j) for j in range(depth)]
        updates, state = opt.update(grads, state, params)
        params = [W + np.asarray(u) for W, u in zip(params, updates)]
        if step % c.save_every == 0:
            expected.append(references.lp_loss(references.product(params), X, Y, 4.0))
    np.testing.assert_allclose(curve["loss"][0][: k + 1], expected, rtol=FLOAT32_TRAJECTORY_RTOL)


# --------------------------------------------------------------------------------------
# Protocol
# --------------------------------------------------------------------------------------


def test_protocol_is_recorded_and_followed(quick):
    _, doc = quick
    c = QUICK
    proto = doc["protocol"]
    assert len(proto["description"]) >= 5 and proto["rise_tolerance"] == c.rise_tolerance
    for name in c.losses:
        rec = proto[name]
        a, b = rec["pilot_a"], rec["pilot_b"]
        assert a["learning_rates"] == sorted(c.lr_grid)
        assert a["steps"] == c.pilot_steps and a["seeds"] == list(c.seeds)
        stable_lrs = [lr for lr, ok in zip(a["learning_rates"], a["stable"]) if ok]
        assert rec["lr_linear"] == max(stable_lrs)
        # Pilot B tries the largest grid values up to lr_linear, in decreasing order, and
        # stops after the first sweep holding a rate stable for every main depth.
        assert b["learning_rates"] == sorted(
            [lr for lr in c.lr_grid if lr <= rec["lr_linear"]], reverse=True
        )[: c.stability_candidates]
        assert b["depths"] == list(c.depths) and b["steps"] == c.stability_steps
        assert rec["lr_gd_stable_in_pilot"]
        assert rec["lr_gd"] == next(lr for lr, ok in zip(b["learning_rates"], b["stable"]) if all(ok))
        # Pilot B is as long as the run: its runs at lr_gd are the main panel's seed 0, and its
        # verdicts are the criterion applied to those curves.
        assert rec["main_seed_0_from_pilot_b"]
        chosen = b["learning_rates"].index(rec["lr_gd"])
        for k, depth in enumerate(c.depths):
            loss = np.asarray(doc["curves"][name][f"gd_depth_{depth}"]["loss"], dtype=float)[0]
            np.testing.assert_allclose(loss[-1], b["final_loss"][chosen][k], rtol=JSON_RTOL)
            assert b["max_rise"][chosen][k] == pytest.approx(_rise_loop(loss), abs=JSON_RTOL)
            assert b["stable"][chosen][k] == (_rise_loop(loss) <= c.rise_tolerance)
        for key, curve in doc["curves"][name].items():
            if curve["method"] in ("gd", "end_to_end") and "_lr_" not in key:
                assert curve["learning_rate"] == rec["lr_gd"], key


def test_l2_linear_model_lr_matches_the_stability_edge(data):
    # GD on ℓ2(w) = w C wᵀ − 2 w·b + c has Hessian 2C: stable iff η < 1/λ_max(C).
    X, _ = data
    edge = 1.0 / np.linalg.eigvalsh(X.T @ X / X.shape[0])[-1]
    config = SMALL._replace(lr_grid=(3.162e-3, 1e-2, 3.162e-2), init_std=QUICK.init_std, end_to_end_depths=(),
                            variant_seeds=1, stability_candidates=1)
    rec = A.run_acceleration_experiment(config, data).protocol["l2"]
    assert max(lr for lr in config.lr_grid if lr < edge) == rec["lr_linear"] == 1e-2
    assert rec["pilot_a"]["stable"] == [True, True, False]


def test_optimizer_learning_rates_are_the_pilot_argmins(quick):
    _, doc = quick
    opt = doc["protocol"]["l4"]["optimizers"]
    assert opt["learning_rates"] == sorted(QUICK.optimizer_lr_grid)
    assert set(opt["chosen"]) == {"adagrad_d1", "adadelta_d1", "adam_d1", "adam_d3"}
    for key, lr in opt["chosen"].items():
        final = np.asarray(opt["runs"][key]["final_loss"], dtype=float)
        assert lr == opt["learning_rates"][int(np.nanargmin(final))]
        assert doc["curves"]["l4"][key]["learning_rate"] == lr


def test_each_depth_at_its_own_largest_stable_rate(small, data):
    # Depth 2 diverges at 1e-2 from the large init: every depth runs at 3.162e-3 (one lr), and
    # depths 1 and 3, stable at 1e-2, also run there (own lr), on variant_seeds seeds; the
    # linear model's run is checked against hand-written NumPy GD for both seeds.
    result, _ = small
    rec = result.protocol["l2"]
    assert (rec["lr_linear"], rec["lr_gd"]) == (1e-2, 3.162e-3)
    assert rec["pilot_b"]["stable"] == [[True, False, True], [True, True, True], [True, True, True]]
    assert rec["lr_own"] == {"1": 1e-2, "2": 3.162e-3, "3": 1e-2}
    assert rec["lr_edge_of_stability"] is None  # depth 2 diverges at 1e-2: not "decreasing"
    assert rec["variants"]["own_lr"]["keys"] == {"1": "gd_depth_1_lr_0.01", "2": "gd_depth_2",
                                                 "3": "gd_depth_3_lr_0.01"}
    runs = result.runs["l2"]
    assert set(runs) == {"gd_depth_1", "gd_depth_2", "gd_depth_3", "gd_depth_1_lr_0.01", "gd_depth_3_lr_0.01",
                         "end_to_end_d2"}
    own = runs["gd_depth_1_lr_0.01"]
    assert (own.method, own.depth, own.learning_rate, own.loss.shape[0]) == ("gd", 1, 1e-2, SMALL.variant_seeds)
    X, Y = data
    for i, seed in enumerate(SMALL.seeds):
        params = _balanced_init(seed, 1, SMALL.init_std)
        expected = [references.lp_loss(params[0], X, Y, 2.0)]
        for _ in range(SMALL.num_steps // SMALL.save_every):
            for _ in range(SMALL.save_every):
                params = references.gd_step(params, X, Y, 2.0, 1e-2)
            expected.append(references.lp_loss(params[0], X, Y, 2.0))
        np.testing.assert_allclose(own.loss[i], expected, rtol=FLOAT32_TRAJECTORY_RTOL)
    # Seed 0 of the variant is pilot B's run (not repeated), seed 1 a new sweep: both the same
    # computation, so the same init gives the same first record.
    assert own.loss[0, 0] == runs["gd_depth_1"].loss[0, 0]


# --------------------------------------------------------------------------------------
# Checks recorded by the run
# --------------------------------------------------------------------------------------


def test_end_to_end_update_gap_is_the_one_in_the_curves(quick):
    _, doc = quick
    for name, checks in doc["checks"].items():
        curves = doc["curves"][name]
        ref = np.asarray(curves["gd_depth_1"]["loss"], dtype=float)
        for depth in QUICK.end_to_end_depths:
            record = checks["end_to_end_vs_network"][f"end_to_end_d{depth}"]
            net = np.asarray(curves[f"gd_depth_{depth}"]["loss"], dtype=float)
            e2e = np.asarray(curves[f"end_to_end_d{depth}"]["loss"], dtype=float)
            n = e2e.shape[0]
            assert record["compared_until_step"] == [None] * n  # nothing diverged in --quick
            # Curves are stored to 6 significant digits: each difference carries ~1e-6 of rounding.
            assert record["max_gap"] == pytest.approx(np.max(np.abs(e2e - net[:n])), abs=1e-5)
            assert record["max_depth_effect"] == pytest.approx(np.max(np.abs(net[:n] - ref[:n])), abs=1e-5)
            claim = doc["claims"]["end_to_end_matches_network"]["variants"]["one_lr"][f"{name}_end_to_end_d{depth}"]
            assert claim["holds"] == (record["gap_over_depth_effect"] <= A._E2E_FRACTION)


def test_float32_losses_and_balanced_init(quick):
    _, doc = quick
    for name, checks in doc["checks"].items():
        assert checks["float64_reevaluation"]["gd"] < FLOAT32_LOSS_RTOL, name
        assert checks["float64_reevaluation"]["baselines"] < FLOAT32_LOSS_RTOL, name
        assert checks["balancedness_at_init"] < FLOAT32_BALANCE_ATOL, name


# --------------------------------------------------------------------------------------
# Tables and claims: recomputed from the curves and the minima by plain loops
# --------------------------------------------------------------------------------------


def _check_tables(doc):
    c = doc["config"]
    steps = np.asarray(doc["steps"])
    for name, tables in doc["tables"].items():
        lstar = doc["minimum"][name]["value"]
        for variant, table in tables.items():
            ref = np.asarray(doc["curves"][name][table["reference"]]["loss"], dtype=float) - lstar
            for key, row in table["rows"].items():
                curve = doc["curves"][name][key]
                excess = np.asarray(curve["loss"], dtype=float) - lstar
                n = min(len(excess), len(ref))
                for m, value in row["excess_milestones"].items():
                    assert value == pytest.approx(np.median(excess[:, int(m) // c["save_every"]]),
                                                  rel=JSON_RTOL, abs=1e-7), (name, variant, key, m)
                assert row["final_excess_median"] == pytest.approx(np.median(excess[:, -1]), rel=JSON_RTOL, abs=1e-7)
                if row["crossover"] is not None:
                    for i, got in enumerate(row["crossover"]["per_seed"]):
                        want = _crossover_loop(steps, excess[i], ref[i])
                        if (got if got is not None else -1) != want:  # a tie moved by the 6-digit rounding
                            k = list(steps).index(got if got is not None else want)
                            k = max(k - 1, 0)
                            assert excess[i, k] == pytest.approx(ref[i, k], rel=10 * JSON_RTOL), (key, i)
                for i, it in enumerate(row["iterations_to_reference_final"][:n]):
                    if curve["diverged_at"][i] >= 0:
                        assert it is None
                        continue
                    hit = np.nonzero(excess[i] <= ref[i, -1])[0]
                    expected = int(steps[hit[0]]) if hit.size else None
                    if it != expected:  # a tie broken differently by the 6-digit rounding
                        k = list(steps).index(it if it is not None else expected)
                        assert excess[i, k] == pytest.approx(ref[i, -1], rel=10 * JSON_RTOL), (name, key, i)
            if variant != "optimizers":
                assert table["rows"][table["reference"]]["iterations_to_reference_final"] == (
                    [c["num_steps"]] * len(ref))


def test_tables_are_the_excess_loss_of_the_curves(quick):
    _check_tables(quick[1])


def test_claims_follow_their_criteria(quick):
    _, doc = quick
    cl = doc["claims"]
    l4 = doc["tables"]["l4"]["one_lr"]["rows"]
    ends = cl["l4_ends_several_times_lower"]["variants"]["one_lr"]["depth_3"]
    lstar = doc["minimum"]["l4"]["value"]
    final = {d: np.asarray(doc["curves"]["l4"][f"gd_depth_{d}"]["loss"], dtype=float)[:, -1] - lstar for d in (1, 3)}
    assert ends["depth_1_over_excess"] == pytest.approx(np.median(final[1] / final[3]), rel=JSON_RTOL)  # per seed
    assert ends["final_excess"] == l4["gd_depth_3"]["final_excess_median"]
    assert cl["l4_ends_several_times_lower"]["holds"] == (ends["depth_1_over_excess"] >= A._ENDS_LOWER_BAR)
    # The raw-loss bound: depth 1's final loss over l4*.
    assert cl["l4_ends_several_times_lower"]["variants"]["one_lr"]["minimum_bar"] == pytest.approx(
        l4["gd_depth_1"]["final_loss_median"] / doc["minimum"]["l4"]["value"], rel=1e-9)
    over = cl["l4_start_slower_then_overtake"]["variants"]["one_lr"]
    assert over["holds"] == all(x["crossover"]["seeds_crossed"] == x["seeds"] == x["starts_slower_seeds"]
                                for k, x in over.items() if k.startswith("depth_"))
    g = cl["gd_beats_adagrad_adadelta"]["variants"]["one_lr"]
    f = g["final_excess"]
    assert g["holds"] == (f["gd_depth_3"] < min(f["adagrad_d1"], f["adadelta_d1"]))
    assert cl["gd_beats_adagrad_adadelta"]["paper"]["adadelta_over_overparameterized_gd"] == 2.5
    adam = cl["adam_overparameterized_faster"]["variants"]["one_lr"]
    assert adam["holds"] == all(a <= b for a, b in zip(adam["adam_depth_3_excess"], adam["adam_depth_1_excess"]))
    no = cl["l2_no_speed_up"]["variants"]["one_lr"]
    T = QUICK.num_steps
    assert no["holds"] == all(x["iterations_to_depth_1_final"] is None
                              or x["iterations_to_depth_1_final"] >= A._NO_SPEED_UP_FRACTION * T
                              for k, x in no.items() if k.startswith("depth_"))
    for claim in cl.values():
        assert claim["holds"] == claim["variants"][claim["primary_variant"]]["holds"]


# --------------------------------------------------------------------------------------
# The edge-of-stability variant through every report
# --------------------------------------------------------------------------------------


def test_edge_of_stability_variant_runs_and_is_reported(edge):
    result, out, doc = edge
    rec = doc["protocol"]["l2"]
    assert (rec["lr_gd"], rec["lr_edge_of_stability"]) == (3.162e-3, 1e-2)
    keys = rec["variants"]["edge_of_stability"]["keys"]
    assert keys == {"1": "gd_depth_1_lr_0.01", "2": "gd_depth_2_lr_0.01", "3": "gd_depth_3_lr_0.01"}
    d2 = doc["curves"]["l2"]["gd_depth_2_lr_0.01"]
    assert d2["diverged_at"][0] >= 0  # the run pilot B saw diverge, kept as data
    assert "end_to_end_d2_lr_0.01" in doc["curves"]["l2"]
    row = doc["tables"]["l2"]["edge_of_stability"]["rows"]["gd_depth_2_lr_0.01"]
    assert row["diverged"] >= 1 and row["stable"][0] is False
    assert "edge_of_stability" in doc["claims"]["l2_no_speed_up"]["variants"]
    _check_tables(doc)
    assert (out / "acceleration_edge_of_stability.png").stat().st_size > 1000
    summary = (out / "acceleration_summary.md").read_text()
    assert "### ℓ2: edge of stability" in summary
    paragraph = A.readme_paragraph(doc)
    assert "edge of stability" in paragraph and "acceleration_edge_of_stability.png" in paragraph
    assert untraced_numbers(paragraph, doc) == []


def test_figures_show_the_excess_loss_on_a_log_scale(edge):
    result, _, _ = edge
    import matplotlib.pyplot as plt

    for figure in (A._depth_figure(result), A._edge_figure(result, ["l2"]), A._extra_depths_figure(result)):
        drawn = [ax for ax in figure.axes if ax.axison]
        assert drawn and all(ax.get_yscale() == "log" for ax in drawn)
        assert any("excess" in ax.get_ylabel() for ax in drawn)
        plt.close(figure)


# --------------------------------------------------------------------------------------
# The README paragraph
# --------------------------------------------------------------------------------------

_NUMBERS = re.compile(r"(?<![\w.])\d[\d,]*(?:\.\d+)?")


def test_readme_paragraph_numbers_all_come_from_the_document(quick):
    _, doc = quick
    paragraph = A.readme_paragraph(doc)
    assert untraced_numbers(paragraph, doc) == []
    assert len(_NUMBERS.findall(paragraph)) > 30  # the paragraph quotes the measurements
    # A number that is not in the document is caught (the check has power).
    assert untraced_numbers(paragraph.replace(f"{doc['minimum']['l4']['value']:.4f}", "0.0643"), doc) == ["0.0643"]
    with pytest.raises(ValueError, match="schema"):
        A.readme_paragraph({**doc, "schema": 1})


def test_readme_block_is_the_committed_results_paragraph():
    path = ROOT / "docs" / "figures" / "acceleration_results.json"
    document = json.loads(path.read_text())
    if document.get("schema") != A.SCHEMA:
        pytest.skip(f"{path.name} predates the second pass (schema {document.get('schema')!r}, this module writes "
                    f"{A.SCHEMA}); the README block is written from the full run's JSON once it is committed")
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- acceleration:begin -->\n(.*?)\n<!-- acceleration:end -->", readme, re.S)
    assert block, "README.md has no <!-- acceleration:begin --> ... <!-- acceleration:end --> block"
    assert block.group(1) == A.readme_paragraph(document)
    assert untraced_numbers(block.group(1), document) == []


# --------------------------------------------------------------------------------------
# Building blocks against independent references
# --------------------------------------------------------------------------------------


def test_l2_from_moments_equals_lp_loss_value_and_gradient(data):
    X, Y = data
    m = X.shape[0]
    C, B, c = X.T @ X / m, Y.T @ X / m, np.sum(Y * Y) / m
    moment = functools.partial(A.l2_loss_from_moments, C=jnp.asarray(C), B=jnp.asarray(B), c=jnp.asarray(c))
    residual = functools.partial(lp_loss, X=jnp.asarray(X), Y=jnp.asarray(Y), p=2.0)
    for seed in range(3):
        W = 0.3 * jax.random.normal(jax.random.key(seed), (1, 128), jnp.float64)
        np.testing.assert_allclose(moment(W), residual(W), rtol=FLOAT64_IDENTITY_RTOL)
        np.testing.assert_allclose(jax.grad(moment)(W), jax.grad(residual)(W),
                                   rtol=FLOAT64_GRADIENT_RTOL, atol=FLOAT64_IDENTITY_RTOL)


# --------------------------------------------------------------------------------------
# Progress, checkpoints, the command line's description
# --------------------------------------------------------------------------------------

SMALL_STAGES = ["l2 pilot A, depth 1 at 3 lrs x 2 seeds", "l2 pilot B, depths [1, 2, 3] at 3 lrs",
                "l2 runs: GD, variants, extra depths, optimizers, end-to-end (2 at a time)"]
# The combined stage's sweeps: GD at the one lr (seed 1; seed 0 is pilot B's), the variant at
# 0.01 (seed 1) and the end-to-end update (seed 0).
SMALL_COMBINED_SWEEPS = 3


def test_every_sweep_reports_progress_as_one_stage(small):
    _, reports = small
    assert reports and all(type(p) is Progress for p in reports)
    stages = list(dict.fromkeys(p.stage for p in reports))
    assert stages == SMALL_STAGES
    for stage, sweeps in zip(stages, (1, 1, SMALL_COMBINED_SWEEPS)):
        done = [p.done for p in reports if p.stage == stage]
        last = [p for p in reports if p.stage == stage][-1]
        assert done == sorted(done) and last.done == last.total == sweeps * SMALL.num_steps, stage


def test_results_do_not_depend_on_how_many_families_run_at_once(small, data):
    reference, _ = small
    one = A.run_acceleration_experiment(SMALL._replace(workers=1), data)
    _assert_same_result(one._replace(config=reference.config), reference)


def _assert_same_result(a, b):
    assert (a.config, a.protocol, a.checks) == (b.config, b.protocol, b.checks)
    np.testing.assert_array_equal(a.steps, b.steps)
    assert list(a.runs["l2"]) == list(b.runs["l2"])
    for key, runs in a.runs["l2"].items():
        for field, value in runs._asdict().items():
            np.testing.assert_array_equal(value, getattr(b.runs["l2"][key], field), err_msg=f"{key}.{field}")


def test_interrupted_run_resumes_bit_for_bit(small, data, tmp_path):
    reference, _ = small
    folder = CheckpointDir(tmp_path, experiment="acceleration", config=SMALL._asdict())
    reports = []

    def stop_in_the_combined_stage(p):
        reports.append(p)
        if p.stage == SMALL_STAGES[2] and p.done >= 2 * SMALL.save_every:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        A.run_acceleration_experiment(SMALL, data, progress=stop_in_the_combined_stage, checkpoint=folder)
    saved = {f.name for f in tmp_path.glob("*.ckpt")}
    assert {"l2_pilot_a.ckpt", "l2_pilot_b.ckpt"} <= saved and len(saved) > 2  # and some of the runs
    reports = []
    resumed = A.run_acceleration_experiment(SMALL, data, progress=reports.append, checkpoint=folder)
    _assert_same_result(resumed, reference)
    first = {}
    for p in reports:
        first.setdefault(p.stage, p.done)
    # The finished pilots are loaded whole; the runs go on after their saved chunks.
    assert list(first.values())[:2] == [SMALL.num_steps] * 2


def test_the_command_line_description_and_summary_lines(small):
    exp = get_experiment("acceleration")
    assert exp is A.EXPERIMENT
    assert (exp.name, tuple(exp.common), tuple(exp.options)) == ("acceleration", ("steps", "seeds"), ())
    assert not exp.x64  # float32 runs; the float64 minima and re-evaluation are NumPy's
    assert exp.configure(quick=True, steps=None, seeds=None, seed=None) == QUICK
    result, _ = small
    lines = exp.summary_lines(result)
    assert lines[0] == ("l2: l* 0.0610768; lr (every depth) 0.003162, own lr per depth 1: 0.01, 2: 0.003162, "
                        "3: 0.01; edge of stability —")
    assert lines[1].startswith(("HOLDS: with l2, depth brings no speed-up", "DOES NOT HOLD: with l2, depth"))
    assert lines[-1].startswith("wall time ") and lines[-1].endswith(" s")


# --------------------------------------------------------------------------------------
# Configuration and errors
# --------------------------------------------------------------------------------------


def test_configure_steps_and_seeds():
    c = A.configure(steps=1_000_000)
    assert (c.num_steps, c.save_every) == (1_000_000, 1000)
    c = A.configure(steps=30_000)
    assert c.save_every == 30 and c.pilot_steps == 2000 and c.optimizer_pilot_steps == 20_000
    assert c.stability_steps == 30_000  # stability is checked over the whole run
    c = A.configure(quick=True, steps=1_500)
    assert 1_500 % c.save_every == 0 and c.num_steps // c.save_every >= 1000
    assert A.configure(quick=True, steps=40).pilot_steps == 40
    c = A.configure(seeds=2)
    assert (c.seeds, c.extra_seeds, c.baseline_seeds, c.variant_seeds) == ((0, 1), 1, 1, 2)
    assert A.configure() == A.AccelerationConfig()
    assert len(A.AccelerationConfig().seeds) >= 5 and A.configure(quick=True).variant_seeds <= 2


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (dict(num_steps=1001), r"multiple of `save_every`"),
        (dict(depths=(2, 3)), r"must contain 1"),
        (dict(extra_depths=(3,)), r"distinct"),
        (dict(losses=("l3",)), r"`losses` must be"),
        (dict(optimizer_losses=("l2",), losses=("l4",)), r"`optimizer_losses`"),
        (dict(baseline_seeds=3), r"`baseline_seeds` \(3\) must be at most"),
        (dict(variant_seeds=3), r"`variant_seeds` \(3\) must be at most"),
        (dict(end_to_end_depths=(4,)), r"`end_to_end_depths`"),
        (dict(init_std=0.0), r"`init_std` must be positive"),
        (dict(rise_tolerance=-1.0), r"`rise_tolerance` must be positive"),
        (dict(lr_grid=()), r"`lr_grid`"),
        (dict(pilot_steps=15), r"`pilot_steps` must be a multiple of 10"),
        (dict(seeds=(0, 0)), r"`seeds` must be distinct"),
        (dict(stability_candidates=0), r"`stability_candidates` must be >= 1"),
    ],
)
def test_run_refuses_a_bad_config_naming_the_field(overrides, match):
    with pytest.raises(ValueError, match=match):  # before loading any data
        A.run_acceleration_experiment(QUICK._replace(**overrides), data=None)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(steps=0), ValueError, "--steps must be a positive integer, got 0"),
        (dict(seeds=-1), ValueError, "--seeds must be a positive integer, got -1"),
        (dict(steps=2.5), ValueError, "--steps must be a positive integer"),
        (dict(quick=True, steps=5), ValueError, "`pilot_steps` must be a multiple of 10"),
        (dict(seed=3), ValueError, "no --seed"),
        (dict(depths=(1,)), TypeError, "depths"),
    ],
)
def test_configure_refuses_bad_values(kwargs, error, match):
    with pytest.raises(error, match=match):
        A.configure(**kwargs)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--steps", "0"], "--steps must be a positive integer"),
        (["--seeds", "-1"], "--seeds must be a positive integer"),
        (["--steps", "5"], "must be a multiple of 10"),
    ],
)
def test_cli_user_errors_are_one_line_exit_2(argv, message, capsys, tmp_path):
    status = main(["reproduce", "acceleration", "--quick", "--out", str(tmp_path), *argv])
    err = capsys.readouterr().err.strip()
    assert status == 2
    assert message in err and "\n" not in err
    assert not list(tmp_path.iterdir())
