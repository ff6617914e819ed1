"""E1: acceleration by depth on the gas-sensor data (experiments/acceleration.py).

One ``--quick`` run through the CLI is shared by the JSON tests. Independent references:
the first records of GD on the depth-2 network and of the end-to-end update against
hand-written NumPy iterations (tests/references*.py); ℓ2 from the moments vs ``lp_loss``
(value and gradient); every method of the combined baseline transformation vs the plain
optax optimizer; the linear model's stability edge η < 1/λ_max(XᵀX/m) for ℓ2 by NumPy.
"""

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from overparam_jax import init_balanced, load_gas_ethanol, lp_loss, optax_descent, pad_to_depth
from overparam_jax.cli import main
from overparam_jax.experiments import acceleration as A
from tests import references, references_preconditioner

# float64 algebraic identities (moments vs residuals, two closed forms of P_W): round-off of
# sums of ~1e3 terms of size O(1), relative.
FLOAT64_IDENTITY_RTOL = 1e-10
# 2(W C − B) vs 2 (XW − Y)ᵀX/m: entries are differences of sums of size |C||W| ~ 10 that
# nearly cancel (cond(C) ~ 5e9), so a few digits more than the loss itself are lost.
FLOAT64_GRADIENT_RTOL = 1e-8
# The experiment trains in float32 (eps 6e-8); a loss is a mean of 2565 terms, so its
# float32 value differs from the float64 one by ~1e-6 relative. 1e-4 leaves headroom for
# the drift of the weights that produced it (they are re-evaluated exactly).
FLOAT32_LOSS_RTOL = 1e-4
# Balanced init in float32: |W_j|^2 products of size |W_e|^(2/N) ~ 0.2, eps-level gaps.
FLOAT32_BALANCE_ATOL = 1e-6
# "Curves coincide": GD on a balanced network tracks the discrete end-to-end update up to
# O(η) (THEORY.md §4). We require the gap to be at most a tenth of how far that depth's
# curve is from the linear model's — the effect the figure shows — and below 5 %.
E2E_GAP_FRACTION_OF_DEPTH_EFFECT = 0.1
E2E_GAP_MAX = 0.05
# The JSON stores curves to 6 significant digits; summaries are computed before rounding.
JSON_RTOL = 1e-5
# The experiment's float32 runs vs float64 NumPy iterations over 100 steps from the same
# init: each loss is a mean of 2565 float32 terms (~1e-6 relative), and the weights carry
# float32 round-off of every step forward.
FLOAT32_TRAJECTORY_RTOL = 1e-4


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("acceleration")
    status = main(["reproduce", "acceleration", "--quick", "--no-progress", "--out", str(out)])
    assert status == 0
    with open(out / "acceleration_results.json") as f:
        return out, json.load(f)


# --------------------------------------------------------------------------------------
# The --quick run: files, shapes, finiteness
# --------------------------------------------------------------------------------------


def test_quick_writes_every_output(quick):
    out, doc = quick
    for name in ("acceleration_depths.png", "acceleration_extra_depths.png",
                 "acceleration_optimizers.png", "acceleration_summary.md"):
        assert (out / name).stat().st_size > 1000, name
    summary = (out / "acceleration_summary.md").read_text()
    assert "standardized" in summary and "float32" in summary
    assert doc["dtype"] == "float32"
    assert "standardized" in doc["data"]["preprocessing"]
    assert "no 1/p" in doc["loss_form"]
    assert doc["metadata"]["jax"] == jax.__version__  # write_json adds versions


def test_quick_curves_have_the_configured_shapes_and_are_finite(quick):
    _, doc = quick
    c = A.quick_config()
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
                depth = int(key.rsplit("_", 1)[1])
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
def test_first_records_follow_hand_written_numpy_iterations(quick, name):
    # GD on the depth-2 network and the discrete end-to-end update of depth 2, at the
    # recorded lr, from seed 0's balanced init: 100 float64 steps by hand vs the run.
    _, doc = quick
    c = A.quick_config()
    p = A.LOSSES[name]
    lr = doc["protocol"][name]["lr_gd"]
    X, Y = load_gas_ethanol(standardize=True)
    init = init_balanced(jax.random.key(c.seeds[0]), (128, 1, 1), std=c.init_std, dtype=jnp.float32)
    params = [np.asarray(W, np.float64) for W in init]
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


# --------------------------------------------------------------------------------------
# Protocol
# --------------------------------------------------------------------------------------


def test_protocol_is_recorded_and_followed(quick):
    _, doc = quick
    c = A.quick_config()
    proto = doc["protocol"]
    assert len(proto["description"]) >= 5
    for name in c.losses:
        rec = proto[name]
        a, b = rec["pilot_a"], rec["pilot_b"]
        assert a["learning_rates"] == sorted(c.lr_grid)
        assert a["steps"] == c.pilot_steps and a["seeds"] == list(c.seeds)
        stable_lrs = [lr for lr, ok in zip(a["learning_rates"], a["stable"]) if ok]
        assert rec["lr_linear"] == max(stable_lrs)
        # Pilot B tries the largest grid values up to lr_linear, in decreasing order,
        # and picks the first stable for every main depth.
        assert b["learning_rates"] == sorted(
            [lr for lr in c.lr_grid if lr <= rec["lr_linear"]], reverse=True
        )[: c.stability_candidates]
        assert b["depths"] == list(c.depths) and b["steps"] == c.stability_steps
        assert rec["lr_gd_stable_in_pilot"]
        assert rec["lr_gd"] == next(lr for lr, ok in zip(b["learning_rates"], b["stable"]) if ok)
        # Pilot B is as long as the run: its runs at lr_gd are the main panel's seed 0
        # (checked against NumPy iterations in test_first_records_follow_...).
        assert rec["main_seed_0_from_pilot_b"]
        chosen = b["learning_rates"].index(rec["lr_gd"])
        for k, depth in enumerate(c.depths):
            final = doc["curves"][name][f"gd_depth_{depth}"]["loss"][0][-1]
            np.testing.assert_allclose(final, b["final_loss"][chosen][k], rtol=1e-5)  # JSON: 6 digits
        for curve in doc["curves"][name].values():
            if curve["method"] in ("gd", "end_to_end") and not curve["label"].endswith("own largest stable lr"):
                assert curve["learning_rate"] == rec["lr_gd"]


def test_l2_linear_model_lr_matches_the_stability_edge():
    # GD on ℓ2(w) = w C wᵀ − 2 w·b + c has Hessian 2C: stable iff η < 1/λ_max(C).
    X, _ = load_gas_ethanol(standardize=True)
    edge = 1.0 / np.linalg.eigvalsh(X.T @ X / X.shape[0])[-1]
    c = A.quick_config(losses=("l2",), optimizer_losses=(), extra_depths=(),
                       lr_grid=(3.162e-3, 1e-2, 3.162e-2), num_steps=100, save_every=10,
                       stability_steps=100)
    problem = A._problems(["l2"])["l2"]
    rec, _ = A._pilot_gd(problem, c, lambda stage: None)
    assert max(lr for lr in c.lr_grid if lr < edge) == rec["lr_linear"] == 1e-2
    assert rec["pilot_a"]["stable"] == [True, True, False]


def test_optimizer_learning_rates_are_the_pilot_argmins(quick):
    _, doc = quick
    c = A.quick_config()
    opt = doc["protocol"]["l4"]["optimizers"]
    assert opt["learning_rates"] == sorted(c.optimizer_lr_grid)
    assert set(opt["chosen"]) == {"adagrad_d1", "adadelta_d1", "adam_d1", "adam_d3"}
    for key, lr in opt["chosen"].items():
        final = np.asarray(opt["runs"][key]["final_loss"], dtype=float)
        assert lr == opt["learning_rates"][int(np.nanargmin(final))]
        assert doc["curves"]["l4"][key]["learning_rate"] == lr


# --------------------------------------------------------------------------------------
# Checks recorded by the run
# --------------------------------------------------------------------------------------


def test_end_to_end_update_coincides_with_the_network(quick):
    _, doc = quick
    for name, checks in doc["checks"].items():
        curves = doc["curves"][name]
        ref = np.asarray(curves["gd_depth_1"]["loss"], dtype=float)
        for depth in A.quick_config().end_to_end_depths:
            record = checks["end_to_end_vs_network"][f"depth_{depth}"]
            gap = record["max_relative_gap"]
            net = np.asarray(curves[f"gd_depth_{depth}"]["loss"], dtype=float)
            e2e = np.asarray(curves[f"end_to_end_d{depth}"]["loss"], dtype=float)
            n = e2e.shape[0]
            assert record["compared_until_step"] == [None] * n  # nothing diverged in --quick
            # The recorded gap is the one in the curves (stored to 6 significant digits, so
            # each ratio carries ~1e-6 of rounding).
            assert gap == pytest.approx(np.max(np.abs(e2e - net[:n]) / net[:n]), abs=1e-5)
            depth_effect = np.max(np.abs(net[:n] - ref[:n]) / ref[:n])
            assert gap < E2E_GAP_MAX, (name, depth)
            assert gap < E2E_GAP_FRACTION_OF_DEPTH_EFFECT * depth_effect, (name, depth, gap, depth_effect)


def test_float32_losses_and_balanced_init(quick):
    _, doc = quick
    for name, checks in doc["checks"].items():
        assert checks["float64_reevaluation"]["gd"] < FLOAT32_LOSS_RTOL, name
        assert checks["float64_reevaluation"]["baselines"] < FLOAT32_LOSS_RTOL, name
        assert checks["balancedness_at_init"] < FLOAT32_BALANCE_ATOL, name


def test_tables_and_claims_are_consistent_with_the_curves(quick):
    _, doc = quick
    c = A.quick_config()
    steps = np.asarray(doc["steps"])
    assert doc["milestone_steps"] == [100, 240, 500, 1000]
    for name, table in doc["tables"].items():
        ref = np.asarray(doc["curves"][name]["gd_depth_1"]["loss"], dtype=float)[:, -1]
        for key, row in table.items():
            loss = np.asarray(doc["curves"][name][key]["loss"], dtype=float)
            for m, value in row["milestones"].items():  # curves: 6 significant digits
                assert value == pytest.approx(np.median(loss[:, int(m) // c.save_every]), rel=JSON_RTOL)
            diverged = doc["curves"][name][key]["diverged_at"]
            for i, it in enumerate(row["iterations_to_depth1_final"]):
                if diverged[i] >= 0:
                    assert it is None
                    continue
                hit = np.nonzero(loss[i] <= ref[i])[0]
                expected = int(steps[hit[0]]) if hit.size else None
                if it != expected:  # a tie broken differently by the 6-digit rounding
                    k = list(steps).index(it if it is not None else expected)
                    assert loss[i, k] == pytest.approx(ref[i], rel=JSON_RTOL), (name, key, i)
        assert table["gd_depth_1"]["iterations_to_depth1_final"] == [c.num_steps] * len(c.seeds)
    l4 = doc["claims"]["l4_depth3"]
    assert isinstance(l4["holds"], bool) and l4["final_ratio_to_depth1"] > 0
    assert set(doc["claims"]["l2_no_speed_up"]) >= {"depth_2", "depth_3", "holds", "statement"}


# --------------------------------------------------------------------------------------
# Building blocks against independent references
# --------------------------------------------------------------------------------------


def test_l2_from_moments_equals_lp_loss_value_and_gradient():
    X, Y = load_gas_ethanol(standardize=True)
    m = X.shape[0]
    C, B, c = X.T @ X / m, Y.T @ X / m, np.sum(Y * Y) / m
    moment = functools.partial(A.l2_loss_from_moments, C=jnp.asarray(C), B=jnp.asarray(B), c=jnp.asarray(c))
    residual = functools.partial(lp_loss, X=jnp.asarray(X), Y=jnp.asarray(Y), p=2.0)
    for seed in range(3):
        W = 0.3 * jax.random.normal(jax.random.key(seed), (1, 128), jnp.float64)
        np.testing.assert_allclose(moment(W), residual(W), rtol=FLOAT64_IDENTITY_RTOL)
        np.testing.assert_allclose(jax.grad(moment)(W), jax.grad(residual)(W),
                                   rtol=FLOAT64_GRADIENT_RTOL, atol=FLOAT64_IDENTITY_RTOL)


def _tiny_problem():
    X = jax.random.normal(jax.random.key(7), (40, 5), jnp.float64)
    Y = X @ jnp.arange(1.0, 6.0)[:, None] / 5 + 0.1 * jax.random.normal(jax.random.key(8), (40, 1))
    return functools.partial(lp_loss, X=X, Y=Y, p=4.0)


@pytest.mark.parametrize(
    ("method", "reference"),
    [("gd", optax.sgd), ("adagrad", optax.adagrad), ("adadelta", optax.adadelta), ("adam", optax.adam)],
)
def test_baseline_transformation_is_the_plain_optax_optimizer(method, reference):
    # Depth 3 with every layer trained (mask of ones).
    loss = _tiny_problem()
    params = init_balanced(jax.random.key(1), (5, 1, 1, 1), std=0.3)
    padded = pad_to_depth(params, 3)
    lr = 1e-2
    combined = A.baseline_transformation(jnp.asarray(A.BASELINE_METHODS.index(method)), jnp.asarray(lr),
                                         padded.mask)
    got = optax_descent(loss, params, combined, num_steps=40, save_every=10)
    want = optax_descent(loss, params, reference(lr), num_steps=40, save_every=10)
    np.testing.assert_allclose(got.loss, want.loss, rtol=FLOAT64_IDENTITY_RTOL)
    for a, b in zip(got.final, want.final):
        np.testing.assert_allclose(a, b, rtol=FLOAT64_IDENTITY_RTOL, atol=1e-14)


def test_with_steps_keeps_about_a_thousand_records():
    c = A.with_steps(A.AccelerationConfig(), 1_000_000)
    assert (c.num_steps, c.save_every) == (1_000_000, 1000)
    c = A.with_steps(A.AccelerationConfig(), 30_000)
    assert c.save_every == 30 and c.pilot_steps == 2000 and c.optimizer_pilot_steps == 20_000
    assert c.stability_steps == 30_000  # stability is checked over the whole run
    c = A.with_steps(A.quick_config(), 1_500)
    assert 1_500 % c.save_every == 0 and c.num_steps // c.save_every >= 1000
    A.validate_config(c)


# --------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (dict(num_steps=1001), r"multiple of `save_every`"),
        (dict(depths=(2, 3)), r"must contain 1"),
        (dict(extra_depths=(3,)), r"distinct"),
        (dict(losses=("l3",)), r"`losses` must be"),
        (dict(optimizer_losses=("l2",), losses=("l4",)), r"`optimizer_losses`"),
        (dict(baseline_seeds=3), r"`baseline_seeds` \(3\) must be at most"),
        (dict(end_to_end_depths=(4,)), r"`end_to_end_depths`"),
        (dict(init_std=0.0), r"`init_std` must be positive"),
        (dict(lr_grid=()), r"`lr_grid`"),
        (dict(pilot_steps=15), r"`pilot_steps` must be a multiple of 10"),
    ],
)
def test_validate_config_names_the_field(overrides, match):
    with pytest.raises(ValueError, match=match):
        A.validate_config(A.quick_config(**overrides))


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
