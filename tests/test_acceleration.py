"""E1: acceleration by depth on the gas-sensor data (experiments/acceleration.py).

One ``--quick`` run through the CLI is shared by the JSON tests. Independent references:
the first records of GD on the depth-2 network, of the end-to-end update and of every
optimizer against hand-written iterations (NumPy gradients, tests/references*.py; plain
optax on the unpadded network); ℓ2 from the moments vs ``lp_loss`` (value and gradient);
the linear model's stability edge η < 1/λ_max(XᵀX/m) for ℓ2 by NumPy. A small run checks
the reference GD at the linear model's own rate, the progress stages and a resume from an
interrupted checkpoint, bit for bit.
"""

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from overparam_jax import init_balanced, load_gas_ethanol, lp_loss
from overparam_jax.checkpoint import CheckpointDir
from overparam_jax.cli import main
from overparam_jax.experiments import acceleration as A
from overparam_jax.experiments import get_experiment
from overparam_jax.runner import Progress
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
# The experiment's float32 runs vs float64 hand-written iterations over 100 steps from the
# same init: each loss is a mean of 2565 float32 terms (~1e-6 relative), and the weights
# carry float32 round-off of every step forward.
FLOAT32_TRAJECTORY_RTOL = 1e-4

QUICK = A.configure(quick=True)
# A small run (seconds): ℓ2 with a large init, where depth 2 diverges at the linear model's
# largest stable rate 1e-2, so GD runs at 3.162e-3 and the linear model also at its own rate.
SMALL = QUICK._replace(
    losses=("l2",), optimizer_losses=(), extra_depths=(), end_to_end_depths=(2,), seeds=(0,),
    lr_grid=(1e-3, 3.162e-3, 1e-2), stability_candidates=3, init_std=0.3,
    num_steps=100, save_every=10, pilot_steps=100, stability_steps=100,
)


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


def _balanced_init(seed: int, depth: int, std: float) -> list[np.ndarray]:
    """The experiment's init of one run (drawn in float32), in float64."""
    init = init_balanced(jax.random.key(seed), (128,) + (1,) * depth, std=std, dtype=jnp.float32)
    return [np.asarray(W, np.float64) for W in init]


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


def test_l2_linear_model_lr_matches_the_stability_edge(data):
    # GD on ℓ2(w) = w C wᵀ − 2 w·b + c has Hessian 2C: stable iff η < 1/λ_max(C).
    X, _ = data
    edge = 1.0 / np.linalg.eigvalsh(X.T @ X / X.shape[0])[-1]
    config = SMALL._replace(lr_grid=(3.162e-3, 1e-2, 3.162e-2), init_std=QUICK.init_std, end_to_end_depths=())
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


def test_linear_model_also_runs_at_its_own_rate_when_gd_is_slower(small, data):
    # Depth 2 diverges at 1e-2 from the large init: every depth runs at 3.162e-3, and the
    # linear model also at 1e-2 ("own lr"), checked against hand-written NumPy GD.
    result, _ = small
    rec = result.protocol["l2"]
    assert (rec["lr_linear"], rec["lr_gd"]) == (1e-2, 3.162e-3)
    assert rec["pilot_b"]["stable"] == [False, True, True]
    own = result.runs["l2"]["gd_d1_own_lr"]
    assert (own.method, own.depth, own.learning_rate) == ("gd", 1, 1e-2)
    assert {r.learning_rate for key, r in result.runs["l2"].items() if key != "gd_d1_own_lr"} == {3.162e-3}
    X, Y = data
    params = _balanced_init(SMALL.seeds[0], 1, SMALL.init_std)
    expected = [references.lp_loss(params[0], X, Y, 2.0)]
    for _ in range(SMALL.num_steps // SMALL.save_every):
        for _ in range(SMALL.save_every):
            params = references.gd_step(params, X, Y, 2.0, 1e-2)
        expected.append(references.lp_loss(params[0], X, Y, 2.0))
    np.testing.assert_allclose(own.loss[0], expected, rtol=FLOAT32_TRAJECTORY_RTOL)


# --------------------------------------------------------------------------------------
# Checks recorded by the run
# --------------------------------------------------------------------------------------


def test_end_to_end_update_coincides_with_the_network(quick):
    _, doc = quick
    for name, checks in doc["checks"].items():
        curves = doc["curves"][name]
        ref = np.asarray(curves["gd_depth_1"]["loss"], dtype=float)
        for depth in QUICK.end_to_end_depths:
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
    c = QUICK
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


def test_every_sweep_reports_progress_as_one_stage(small):
    _, reports = small
    assert reports and all(type(p) is Progress for p in reports)
    stages = list(dict.fromkeys(p.stage for p in reports))
    assert stages == ["l2 pilot A, depth 1 at 3 lrs x 1 seeds", "l2 pilot B, depths [1, 2, 3] at 3 lrs",
                      "l2 GD, depth 1 at its own lr x 1 seeds", "l2 end-to-end update, depths [2] x 1 seeds"]
    for stage in stages:
        done = [p.done for p in reports if p.stage == stage]
        total = {p.total for p in reports if p.stage == stage}
        assert total == {SMALL.num_steps} and done == sorted(done) and done[-1] == SMALL.num_steps, stage


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

    def stop_in_the_third_stage(p):
        if p.stage.startswith("l2 GD, depth 1 at its own lr"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        A.run_acceleration_experiment(SMALL, data, progress=stop_in_the_third_stage, checkpoint=folder)
    assert sorted(f.name for f in tmp_path.glob("*.ckpt")) == ["l2_gd_d1_own_lr.ckpt", "l2_pilot_a.ckpt",
                                                                "l2_pilot_b.ckpt"]
    reports = []
    resumed = A.run_acceleration_experiment(SMALL, data, progress=reports.append, checkpoint=folder)
    _assert_same_result(resumed, reference)
    first = {}
    for p in reports:
        first.setdefault(p.stage, p.done)
    # The pilots are loaded whole, the interrupted stage goes on after its saved chunk.
    assert list(first.values())[:3] == [SMALL.num_steps, SMALL.num_steps, SMALL.save_every]


def test_the_command_line_description_and_summary_lines(small):
    exp = get_experiment("acceleration")
    assert exp is A.EXPERIMENT
    assert (exp.name, tuple(exp.common), tuple(exp.options)) == ("acceleration", ("steps", "seeds"), ())
    assert not exp.x64  # float32 runs; the float64 re-evaluation is NumPy's
    assert exp.configure(quick=True, steps=None, seeds=None, seed=None) == QUICK
    result, _ = small
    lines = exp.summary_lines(result)
    assert lines[0] == "l2: lr (every depth) 0.003162, linear model's largest stable lr 0.01"
    assert lines[1].startswith(("HOLDS: with l2, depth brings no speed-up", "DOES NOT HOLD: with l2, depth"))
    assert lines[-1].startswith("wall time ") and lines[-1].endswith(" s") and len(lines) == 3


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
    c = A.configure(seeds=3)
    assert (c.seeds, c.extra_seeds, c.baseline_seeds) == ((0, 1, 2), 1, 1)
    assert A.configure() == A.AccelerationConfig()


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
