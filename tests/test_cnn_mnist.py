"""E3: the MNIST ConvNet and its linearly overparameterized twin (experiments/cnn_mnist.py).

Independent references: parameter counts by hand; a NumPy float64 forward pass (conv by
sliding windows, pooling by reshape); the twin against a baseline whose dense weights are
the NumPy products of its factors; the L2 term and learning-rate schedule by hand.
Training runs are tiny (the compiled steps are shared between the tests) so the file
stays well under a minute on 2 cores.
"""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from overparam_jax.checkpoint import CheckpointDir, CheckpointMismatch
from overparam_jax.cli import main
from overparam_jax.datasets import load_mnist
from overparam_jax.experiments import cnn_mnist as C
from overparam_jax.networks import end_to_end

# The JAX forward pass runs in float32 (the experiment's dtype) and the references in
# float64; logits are O(1-10) after sums of ~1e3 float32 products: ~1e-6 relative each.
FLOAT32_FORWARD_RTOL = 1e-4
FLOAT32_FORWARD_ATOL = 1e-4

# Parameter counts by hand (kernel + bias per layer).
CONV1 = 5 * 5 * 1 * 32 + 32
CONV2 = 5 * 5 * 32 * 64 + 64
FC1 = 3136 * 512 + 512
FC2 = 512 * 10 + 10
BASELINE_PARAMS = CONV1 + CONV2 + FC1 + FC2
TWIN_PARAMS = BASELINE_PARAMS + 512 * 512 + 10 * 10


@pytest.fixture(scope="module")
def mnist(mnist_dir):
    return load_mnist(mnist_dir, download=False)


def _tiny(**overrides):
    # Same compiled train step as `--quick` (same train size and hyperparameters), smaller evals.
    return C.quick_config(**{"num_steps": 30, "validation_size": 128, "test_subset": 250, **overrides})


@pytest.fixture(scope="module")
def tiny_run(mnist):
    return C.run_cnn_experiment(_tiny(), mnist)


def _count(tree):
    return sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(tree))


# --------------------------------------------------------------------------------------
# Structure and initialization
# --------------------------------------------------------------------------------------


def test_parameter_counts_by_hand():
    key = jax.random.key(0)
    assert BASELINE_PARAMS == 1_663_370
    shapes = lambda depth: jax.eval_shape(lambda k: C.init_params(k, dense_depth=depth), key)
    assert _count(shapes(1)) == BASELINE_PARAMS
    assert _count(shapes(2)) == TWIN_PARAMS
    assert 0.15 < (TWIN_PARAMS - BASELINE_PARAMS) / BASELINE_PARAMS < 0.16  # "≈ +15 %"


def test_init_is_the_tutorials_and_the_twin_starts_at_the_same_function():
    key = jax.random.key(3)
    base, twin = C.init_params(key), C.init_params(key, dense_depth=2)
    shapes = jax.tree_util.tree_map(lambda a: a.shape, base)
    assert shapes == {
        "conv1": {"kernel": (5, 5, 1, 32), "bias": (32,)},
        "conv2": {"kernel": (5, 5, 32, 64), "bias": (64,)},
        "fc1": {"factors": ((512, 3136),), "bias": (512,)},
        "fc2": {"factors": ((10, 512),), "bias": (10,)},
    }
    assert all(a.dtype == jnp.float32 for a in jax.tree_util.tree_leaves(twin))
    for name, value in (("conv1", 0.0), ("conv2", 0.1), ("fc1", 0.1), ("fc2", 0.1)):
        np.testing.assert_array_equal(base[name]["bias"], np.float32(value))
    # 0.1 · N(0,1) truncated at ±2: the standard deviation of the truncated normal.
    phi2 = math.exp(-2.0) / math.sqrt(2 * math.pi)
    mass = math.erf(2 / math.sqrt(2))
    expected_std = 0.1 * math.sqrt(1 - 2 * 2 * phi2 / mass)
    W = np.asarray(base["fc1"]["factors"][0])
    assert np.max(np.abs(W)) <= 0.2
    assert abs(W.std() - expected_std) < 2e-4  # 1.6M samples: sampling error ~5e-5
    # The twin: the baseline's matrices first, then the identity.
    for name, d in (("fc1", 512), ("fc2", 10)):
        np.testing.assert_array_equal(twin[name]["factors"][0], base[name]["factors"][0])
        np.testing.assert_array_equal(twin[name]["factors"][1], np.eye(d))


@pytest.mark.parametrize("depth", [0, -1, 1.5])
def test_bad_dense_depth_raises(depth):
    with pytest.raises(ValueError, match="`dense_depth` must be an int >= 1"):
        C.init_params(jax.random.key(0), dense_depth=depth)


# --------------------------------------------------------------------------------------
# The forward pass against independent references
# --------------------------------------------------------------------------------------


def _np_conv_same(x, k):
    """NHWC × HWIO 'SAME' convolution (cross-correlation, as TF) by sliding windows."""
    kh, kw = k.shape[:2]
    xp = np.pad(x, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(1, 2))  # B,H,W,C,kh,kw
    return np.einsum("bhwcij,ijco->bhwo", win, k)


def _np_forward(params, x):
    h = x
    for name in ("conv1", "conv2"):
        p = params[name]
        h = np.maximum(_np_conv_same(h, p["kernel"]) + p["bias"], 0.0)
        B, H, W, Ch = h.shape
        h = h.reshape(B, H // 2, 2, W // 2, 2, Ch).max(axis=(2, 4))
    h = h.reshape(h.shape[0], -1)
    h = np.maximum(h @ params["fc1"]["W"].T + params["fc1"]["bias"], 0.0)
    return h @ params["fc2"]["W"].T + params["fc2"]["bias"]


def _to_numpy64(params):
    """Baseline params as float64 NumPy, dense layers as one matrix ``W``."""
    out = {n: {k: np.asarray(v, np.float64) for k, v in params[n].items()} for n in ("conv1", "conv2")}
    for n in ("fc1", "fc2"):
        W = np.asarray(params[n]["factors"][0], np.float64)
        for F in params[n]["factors"][1:]:
            W = np.asarray(F, np.float64) @ W
        out[n] = {"W": W, "bias": np.asarray(params[n]["bias"], np.float64)}
    return out


def test_preprocess_is_the_tutorials_scaling():
    img = np.array([[[0, 255], [127, 128]]], dtype=np.uint8)
    x = C.preprocess(img)
    assert x.shape == (1, 2, 2, 1) and x.dtype == jnp.float32
    np.testing.assert_allclose(x[..., 0], (img.astype(np.float64) - 127.5) / 255.0, rtol=1e-7)


def test_forward_matches_numpy_reference(mnist):
    params = C.init_params(jax.random.key(1))
    images = mnist.test_images[:4]
    logits = jax.jit(C.apply)(params, C.preprocess(images))
    expected = _np_forward(_to_numpy64(params), (images.astype(np.float64) - 127.5)[..., None] / 255.0)
    assert logits.shape == (4, 10) and logits.dtype == jnp.float32
    np.testing.assert_allclose(logits, expected, rtol=FLOAT32_FORWARD_RTOL, atol=FLOAT32_FORWARD_ATOL)


def test_twin_computes_the_baseline_with_product_weights(mnist):
    """The twin (random, non-identity second factors) equals the baseline whose dense
    weights are the NumPy float64 products, in evaluation and with the same dropout mask."""
    key = jax.random.key(2)
    twin = C.init_params(key, dense_depth=2)
    rng = np.random.default_rng(0)
    for name, d in (("fc1", 512), ("fc2", 10)):
        W1, _ = twin[name]["factors"]
        W2 = np.eye(d) + rng.normal(scale=0.3 / math.sqrt(d), size=(d, d))
        twin[name]["factors"] = (W1, jnp.asarray(W2, jnp.float32))
    ref = _to_numpy64(twin)
    base = {n: dict(twin[n]) for n in twin}
    for name in ("fc1", "fc2"):
        base[name]["factors"] = (jnp.asarray(ref[name]["W"], jnp.float32),)
    x = C.preprocess(mnist.test_images[:8])
    tol = dict(rtol=FLOAT32_FORWARD_RTOL, atol=FLOAT32_FORWARD_ATOL)
    np.testing.assert_allclose(C.apply(twin, x), C.apply(base, x), **tol)
    np.testing.assert_allclose(end_to_end(twin["fc1"]["factors"]), ref["fc1"]["W"], rtol=1e-5, atol=1e-6)
    dk = jax.random.key(9)
    np.testing.assert_allclose(
        C.apply(twin, x, dropout_key=dk), C.apply(base, x, dropout_key=dk), **tol
    )
    # ...and dropout is on: a different mask gives different logits.
    assert not np.allclose(C.apply(twin, x, dropout_key=dk), C.apply(twin, x))


def test_l2_penalty_by_hand():
    twin = C.init_params(jax.random.key(4), dense_depth=2)
    twin["fc1"]["factors"] = (twin["fc1"]["factors"][0], 0.5 * twin["fc1"]["factors"][1])
    ref = _to_numpy64(twin)
    sq = lambda a: 0.5 * float(np.sum(np.asarray(a, np.float64) ** 2))  # tf.nn.l2_loss
    biases = sq(ref["fc1"]["bias"]) + sq(ref["fc2"]["bias"])
    product = sq(ref["fc1"]["W"]) + sq(ref["fc2"]["W"]) + biases
    factors = sum(sq(F) for n in ("fc1", "fc2") for F in twin[n]["factors"]) + biases
    assert float(C.l2_penalty(twin, l2_target="product")) == pytest.approx(product, rel=1e-5)
    assert float(C.l2_penalty(twin, l2_target="factors")) == pytest.approx(factors, rel=1e-5)
    with pytest.raises(ValueError, match="`l2_target` must be one of"):
        C.l2_penalty(twin, l2_target="both")


def test_learning_rate_schedule_is_the_tutorials_staircase():
    # 0.01 · 0.95^floor(64 t / 55000): the first decay after 55000 examples, at t = 860.
    schedule = jax.jit(C.learning_rate_schedule(C.CNNConfig(), 55_000))
    for t, k in ((0, 0), (859, 0), (860, 1), (1718, 1), (1719, 2), (8592, 9)):
        assert float(schedule(jnp.asarray(t, jnp.int32))) == pytest.approx(0.01 * 0.95**k, rel=1e-6)


# --------------------------------------------------------------------------------------
# Training runs
# --------------------------------------------------------------------------------------


def test_run_structure(tiny_run):
    r = tiny_run
    assert r.num_steps == 30 and r.train_size == 1920
    assert r.baseline.param_count == BASELINE_PARAMS
    assert r.overparameterized.param_count == TWIN_PARAMS
    for run in (r.baseline, r.overparameterized):
        assert run.loss.shape == run.data_loss.shape == (30,)
        assert np.all(np.isfinite(run.loss)) and np.all(run.data_loss < run.loss)
        np.testing.assert_array_equal(run.eval_step, [0, 30])  # an epoch is 60 steps
        assert run.test_accuracy.shape == run.validation_accuracy.shape == (2,)
        assert run.steps_per_second > 0
    # Same initial function and first batch: step 0's loss is the same for both nets.
    assert r.baseline.loss[0] == pytest.approx(r.overparameterized.loss[0], rel=1e-5)
    assert r.baseline.test_accuracy[0] == r.overparameterized.test_accuracy[0]


def test_training_reduces_the_loss(tiny_run):
    for run in (tiny_run.baseline, tiny_run.overparameterized):
        first, last = np.mean(run.data_loss[:5]), np.mean(run.data_loss[-5:])
        assert last < 0.5 * first, (run.name, first, last)
        assert np.mean(run.loss[-5:]) < np.mean(run.loss[:5])
        assert run.test_accuracy[-1] > 0.5 > run.test_accuracy[0]


def test_same_seed_same_losses_other_seed_other_losses(mnist, tiny_run, tmp_path):
    # A shorter run with the same seed sees the same batches, masks and init: a prefix.
    # Chunked differently (a report every 3 steps, not 10): the same bits.
    again = C.run_cnn_experiment(_tiny(num_steps=8, log_every=3), mnist)
    for a, b in ((again.baseline, tiny_run.baseline), (again.overparameterized, tiny_run.overparameterized)):
        np.testing.assert_array_equal(a.loss, b.loss[:8])
        np.testing.assert_array_equal(a.data_loss, b.data_loss[:8])
    other = C.run_cnn_experiment(_tiny(num_steps=3, seed=1), mnist, nets=("baseline",))
    assert other.overparameterized is None
    assert not np.array_equal(other.baseline.loss, tiny_run.baseline.loss[:3])
    # A single net reports alone (no comparison rows, no extra-parameters line).
    assert len(C.EXPERIMENT.summary_lines(other)) == 1
    text = C.EXPERIMENT.write_outputs(other, tmp_path)["summary"].read_text()
    assert "| baseline | 1,663,370 |" in text and "| overparameterized |" not in text
    assert "more parameters" not in text and "twin first reaches" not in text


def test_interrupted_run_resumes_bit_identical_wherever_the_images_are(mnist, tiny_run, tmp_path):
    """Chunks end at every report (7), checkpoint (20) and evaluation (0, 30); a run stopped
    after one resumes there, with its images read from elsewhere (another ``data_dir``), to
    the bits of the uninterrupted run (chunked otherwise); other images are refused."""
    config = _tiny(log_every=7, checkpoint_every=20, data_dir="/one/copy")
    folder = CheckpointDir(tmp_path, experiment="cnn", config={"test": "resume"})
    seen = []

    def stop_after_14(p):
        seen.append((p.stage, p.done, p.total, sorted(p.metrics)))
        if p.done >= 14:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        C.run_cnn_experiment(config, mnist, nets=("baseline",), progress=stop_after_14, checkpoint=folder)
    assert seen == [("baseline", 0, 30, ["test_accuracy"]), ("baseline", 7, 30, ["loss"]),
                    ("baseline", 14, 30, ["loss"])]
    other = mnist._replace(test_images=mnist.test_images.copy())
    other.test_images[0, 0, 0] ^= 1
    with pytest.raises(CheckpointMismatch, match="a different configuration"):
        C.run_cnn_experiment(config, other, nets=("baseline",), checkpoint=folder)
    done = []
    resumed = C.run_cnn_experiment(config._replace(data_dir="/another/copy"), mnist, nets=("baseline",),
                                   checkpoint=folder, progress=lambda p: done.append(p.done))
    assert done == [14, 20, 21, 28, 30]
    for field in ("param_count", "loss", "data_loss", "eval_step", "test_accuracy", "validation_accuracy"):
        got, expected = np.asarray(getattr(resumed.baseline, field)), np.asarray(getattr(tiny_run.baseline, field))
        assert got.dtype == expected.dtype, field
        np.testing.assert_array_equal(got, expected, err_msg=field)


def test_summary_json_and_figure_from_a_run(tiny_run, tmp_path):
    paths = C.EXPERIMENT.write_outputs(tiny_run, tmp_path)
    doc = json.loads(paths["json"].read_text())
    assert doc["runs"]["overparameterized"]["param_count"] == TWIN_PARAMS
    assert len(doc["runs"]["baseline"]["loss"]) == 30 and doc["metadata"]["jax"]
    assert doc["config"]["l2_target"] == "product"
    text = paths["summary"].read_text()
    assert "| baseline | 1,663,370 |" in text and "+15.8 %" in text
    assert paths["loss"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "data_dir" not in doc["config"]  # where the images were read, not what was computed


def test_summary_lines_are_what_the_command_prints(tiny_run):
    lines = C.EXPERIMENT.summary_lines(tiny_run)
    assert [line.split()[:3] for line in lines[:2]] == [["baseline", "1,663,370", "parameters"],
                                                       ["overparameterized", "1,925,614", "parameters"]]
    accuracy = 100 * tiny_run.overparameterized.test_accuracy[-1]
    assert lines[1].endswith(f"steps/s  final test accuracy {accuracy:.2f} %")
    assert lines[2] == "overparameterization adds 262,244 parameters (+15.8 %)"


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"batch_size": 0}, "`batch_size` must be a positive int"),
        ({"l2_target": "sum"}, "`l2_target` must be one of"),
        ({"momentum": 1.0}, r"`momentum` must be in \[0, 1\)"),
        ({"weight_decay": -1.0}, "`weight_decay` must be non-negative"),
        ({"train_subset": 60_000}, "`train_subset`"),
        ({"num_steps": 0}, "`num_steps` must be a positive int or None"),
    ],
)
def test_bad_config_raises(mnist, overrides, match):
    with pytest.raises(ValueError, match=match):
        C.validate_config(C.quick_config(**overrides), mnist)


# --------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------


def test_configure_derives_the_commands_configuration():
    configure = C.EXPERIMENT.configure
    assert configure(quick=True, steps=None, seeds=None, seed=0) == C.quick_config(seed=0)
    full = configure(quick=False, steps=7, seeds=None, seed=3, data_dir="d", l2_on="factors", weight_decay=0.0)
    assert full == C.CNNConfig(num_steps=7, seed=3, data_dir="d", l2_target="factors", weight_decay=0.0)
    with pytest.raises(ValueError, match="one seed"):
        configure(quick=True, steps=None, seeds=2, seed=None)


def test_load_checks_the_data_against_the_configuration(mnist_dir):
    with pytest.raises(ValueError, match="`train_subset` \\(59600\\) must be between"):
        C.EXPERIMENT.load(C.quick_config(data_dir=str(mnist_dir), train_subset=59_600))


def test_cli_reproduce_cnn_writes_json_png_markdown(mnist_dir, tmp_path, capsys):
    out = tmp_path / "cnn"
    argv = ["reproduce", "cnn", "--quick", "--steps", "6", "--data-dir", str(mnist_dir),
            "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "1,925,614 parameters" in printed and "+15.8 %" in printed
    doc = json.loads((out / "cnn_results.json").read_text())
    assert doc["num_steps"] == 6 and set(doc["runs"]) == {"baseline", "overparameterized"}
    assert (out / "cnn_loss.png").stat().st_size > 0
    assert (out / "cnn_summary.md").read_text().startswith("# E3")


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--steps", "0"], "--steps must be a positive integer, got 0"),
     (["--weight-decay", "-1"], "--weight-decay must be non-negative, got -1.0")],
)
def test_cli_bad_arguments_are_one_line_exit_2(args, message, tmp_path, capsys):
    assert main(["reproduce", "cnn", "--quick", "--out", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"overparam-jax: error: {message}"]


def test_cli_missing_data_is_one_line_exit_2(tmp_path, capsys, monkeypatch):
    # No files in --data-dir, none in the (empty) cache, and no network: one clean line.
    import overparam_jax.datasets as datasets

    monkeypatch.setattr(datasets, "_MNIST_MIRRORS", ("http://127.0.0.1:9/",))
    assert main(["reproduce", "cnn", "--quick", "--data-dir", str(tmp_path), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("overparam-jax: error: cannot load the data: "), err


def test_cli_reproduce_needs_an_experiment(capsys):
    with pytest.raises(SystemExit) as e:
        main(["reproduce"])
    assert e.value.code == 2
