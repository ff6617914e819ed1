"""Tests for overparam_jax.datasets: gas-sensor Ethanol, standardization, whitening, MNIST.

References are independent of the code under test: the source CSV parsed with
``np.loadtxt``, checksums recomputed with ``hashlib`` and compared with the published
``MD5SUMS``, the MNIST label counts and mean pixel published for the dataset, and the
whitening formula of THEORY.md §2 evaluated through ``eigh`` of the covariance.
No test touches the network: downloads are served from local folders through
``file://`` URLs.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import os
import re
import shutil
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from overparam_jax import (
    MNIST,
    Whitened,
    load_gas_ethanol,
    load_mnist,
    lp_loss,
    standardize_columns,
    whiten,
    whitened_l2_loss,
)
from overparam_jax import datasets

REPO = Path(__file__).resolve().parents[1]
SHIPPED_NPZ = REPO / "overparam_jax" / "data" / "gas_ethanol.npz"
GAS_CSV = "gas_sensor/ethanol_uci_datasets_gas_data.csv.gz"
GAS_CSV_SHA256 = "bd82bee47199d3952bee30a59739794b26baa742e1da7f7bd42b9a34552321a1"
GAS_ARRAYS_SHA256 = datasets._GAS_ETHANOL_SHA256

EPS = np.finfo(np.float64).eps
# float64 identities (orthonormality, Phi = Y^T X_w / m, loss offsets): round-off of sums
# over m = 2565 terms of O(1) numbers, ~1e-13; 1e-10 leaves room without hiding errors.
F64_TOL = 1e-10

# Published facts about MNIST (PROVENANCE.txt; the usual normalization constants).
TRAIN_LABEL_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_LABEL_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
FIRST_TRAIN_LABELS = [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
FIRST_TEST_LABELS = [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
TRAIN_PIXEL_MEAN, TRAIN_PIXEL_STD = 0.1307, 0.3081  # of pixels / 255, to 4 digits
MNIST_NAMES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


@pytest.fixture(autouse=True)
def _offline_mirrors(monkeypatch, tmp_path):
    """Any download a test does not set up itself fails locally, never reaching out."""
    nowhere = tmp_path / "no-mirror"
    monkeypatch.setattr(datasets, "_MNIST_MIRRORS", (nowhere.as_uri() + "/",))


# --------------------------------------------------------------------------------------
# Gas sensor, Ethanol
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gas():
    return load_gas_ethanol()


def test_gas_shapes_and_dtype(gas):
    X, y = gas
    assert X.shape == (2565, 128) and y.shape == (2565, 1)
    assert X.dtype == np.float64 and y.dtype == np.float64
    assert np.all(np.isfinite(X)) and np.all(np.isfinite(y))


def test_gas_checksum_constant_matches_arrays(gas):
    X, y = gas
    digest = hashlib.sha256(X.astype("<f8").tobytes() + y.astype("<f8").tobytes()).hexdigest()
    assert digest == datasets._GAS_ETHANOL_SHA256


def test_gas_shipped_copy_equals_source_csv(gas, shared_data):
    source = shared_data / GAS_CSV
    assert hashlib.sha256(source.read_bytes()).hexdigest() == GAS_CSV_SHA256
    table = np.loadtxt(source, delimiter=",")
    X, y = gas
    np.testing.assert_array_equal(X, table[:, :128])
    np.testing.assert_array_equal(y, table[:, 128:])


def test_gas_build_script_is_deterministic(shared_data, tmp_path):
    script = REPO / "scripts" / "build_gas_ethanol.py"
    spec = importlib.util.spec_from_file_location("build_gas_ethanol", script)
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    out = tmp_path / "gas_ethanol.npz"
    assert build.main(["--source", str(shared_data / GAS_CSV), "--output", str(out)]) == 0
    assert out.read_bytes() == SHIPPED_NPZ.read_bytes()


def test_gas_column_scales_as_theory_says(gas):
    # THEORY.md §8 E1: column stds from 0.5 to 4e4, condition number of X ~1e7.
    X, y = gas
    std = X.std(axis=0)
    assert std.min() == pytest.approx(0.5, rel=0.1)  # measured 0.527
    assert std.max() == pytest.approx(4e4, rel=0.1)  # measured 4.21e4
    assert 1e6 < np.linalg.cond(X) < 1e8  # measured 1.21e7
    # PROVENANCE.txt: centered features (rounded to 5 digits), standardized target.
    assert np.abs(X.mean(axis=0)).max() < 0.01
    assert abs(y.mean()) < 1e-3 and y.std() == pytest.approx(1.0, abs=0.05)
    assert len(np.unique(y)) == 35


def test_gas_returns_a_fresh_copy():
    X, _ = load_gas_ethanol()
    X[0, 0] = 123.0
    X2, _ = load_gas_ethanol()
    assert X2[0, 0] != 123.0


def _flip_middle_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate_half(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _altered_value(path: Path) -> None:
    with np.load(path) as npz:
        X, y = npz["X"].copy(), npz["y"]
    X[7, 3] += 1.0
    np.savez_compressed(path, X=X, y=y)


def _missing_array(path: Path) -> None:
    with np.load(path) as npz:
        X = npz["X"]
    np.savez_compressed(path, X=X)


def _wrong_shape(path: Path) -> None:
    with np.load(path) as npz:
        X, y = npz["X"], npz["y"]
    np.savez_compressed(path, X=X[:-1], y=y[:-1])


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (_truncate_half, "corrupt or truncated"),
        (_flip_middle_byte, "corrupt or truncated"),
        (lambda p: p.write_bytes(b""), "corrupt or truncated"),
        (_altered_value, f"SHA-256 of the arrays is [0-9a-f]{{64}}; expected {GAS_ARRAYS_SHA256}"),
        (_missing_array, r"expected arrays \['X', 'y'\], found \['X'\]"),
        (_wrong_shape, r"float64 of shape \(2565, 128\), but is float64 of shape \(2564, 128\)"),
    ],
    ids=["truncated", "flipped-byte", "empty", "altered-value", "missing-array", "wrong-shape"],
)
def test_gas_corrupt_file_raises(tmp_path, corrupt, message):
    path = tmp_path / "gas_ethanol.npz"
    shutil.copyfile(SHIPPED_NPZ, path)
    datasets._load_gas_npz(path)  # the intact copy loads
    corrupt(path)
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*" + message):
        datasets._load_gas_npz(path)


def test_gas_missing_file_raises(tmp_path):
    path = tmp_path / "gas_ethanol.npz"
    with pytest.raises(FileNotFoundError, match=re.escape(str(path)) + ".*missing"):
        datasets._load_gas_npz(path)


# --------------------------------------------------------------------------------------
# standardize_columns
# --------------------------------------------------------------------------------------


def test_standardize_gas(gas):
    X, y = gas
    Xs, ys = load_gas_ethanol(standardize=True)
    np.testing.assert_array_equal(Xs, standardize_columns(X))
    np.testing.assert_array_equal(ys, y)
    np.testing.assert_allclose(Xs.mean(axis=0), 0.0, atol=F64_TOL)
    np.testing.assert_allclose(Xs.std(axis=0), 1.0, rtol=F64_TOL)
    # standardizing changes only column scales: X = Xs diag(std) + mean.
    np.testing.assert_allclose(Xs * X.std(axis=0) + X.mean(axis=0), X, rtol=1e-12, atol=1e-9)


def test_standardize_keeps_dtype_and_input():
    X = np.arange(12, dtype=np.float32).reshape(4, 3) ** 2
    before = X.copy()
    Xs = standardize_columns(X)
    assert Xs.dtype == np.float32
    np.testing.assert_array_equal(X, before)
    np.testing.assert_allclose(Xs.std(axis=0), 1.0, rtol=1e-5)


def test_standardize_errors():
    X = np.ones((5, 4))
    X[:, [0, 3]] = np.arange(5.0)[:, None]
    with pytest.raises(ValueError, match=r"`X`.*columns \[1, 2\] have standard deviation 0"):
        standardize_columns(X)
    X[2, 0] = np.nan
    with pytest.raises(ValueError, match="`X` must be finite"):
        standardize_columns(X)
    with pytest.raises(ValueError, match="`X` must have rank 2"):
        standardize_columns(np.ones(5))
    with pytest.raises(TypeError, match="`X` must have a real floating dtype"):
        standardize_columns(np.ones((5, 2), dtype=np.int64))


# --------------------------------------------------------------------------------------
# whiten
# --------------------------------------------------------------------------------------


def _whiten_reference(X, Y):
    """THEORY.md §2 literally: eigh of the covariance, X_w = X_c V diag(1/sqrt(lambda))."""
    m = X.shape[0]
    X_c = X - X.mean(axis=0)
    lam, V = np.linalg.eigh(X_c.T @ X_c / m)
    X_w = X_c @ V / np.sqrt(lam)
    return X_w, Y.T @ X_w / m, V / np.sqrt(lam)


def _alignment(A, B):
    """Column order and signs taking ``A`` to ``B`` (directions are defined up to sign)."""
    order = [int(np.argmax(np.abs(A.T @ b))) for b in B.T]
    signs = np.sign(np.sum(A[:, order] * B, axis=0))
    return order, signs


def test_whiten_matches_eigh_reference():
    rng = np.random.default_rng(0)
    m, d_0, d_N = 60, 4, 2
    X = rng.normal(size=(m, d_0)) @ rng.normal(size=(d_0, d_0)) + 3.0
    Y = X @ rng.normal(size=(d_0, d_N)) + rng.normal(size=(m, d_N)) + 1.0
    w = whiten(X, Y)
    X_ref, Phi_ref, T_ref = _whiten_reference(X, Y)
    order, signs = _alignment(X_ref, w.X)
    np.testing.assert_allclose(w.X, X_ref[:, order] * signs, atol=F64_TOL)
    np.testing.assert_allclose(w.Phi, Phi_ref[:, order] * signs, atol=F64_TOL)
    np.testing.assert_allclose(w.transform, T_ref[:, order] * signs, atol=F64_TOL)
    np.testing.assert_allclose(w.mean, X.mean(axis=0), atol=F64_TOL)
    np.testing.assert_allclose(w.Y, Y - Y.mean(axis=0), atol=F64_TOL)
    assert w.label_scale == 1.0
    assert isinstance(w, Whitened)
    lam = 1.0 / np.sum(w.transform**2, axis=0)  # columns of V diag(lambda^-1/2)
    assert np.all(np.diff(lam) < 0)  # principal directions, largest variance first


@pytest.fixture(scope="module")
def whitened_gas():
    """``get(standardize, scale_labels) -> (X, y, whiten(X, y, ...))``, computed once each."""
    cache = {}

    def get(standardize: bool, scale_labels: bool = False):
        key = (standardize, scale_labels)
        if key not in cache:
            X, y = load_gas_ethanol(standardize=standardize)
            cache[key] = (X, y, whiten(X, y, scale_labels=scale_labels))
        return cache[key]

    return get


@pytest.mark.parametrize("standardize", [False, True], ids=["raw", "standardized"])
def test_whiten_gas(whitened_gas, standardize):
    X, y, w = whitened_gas(standardize)
    m = X.shape[0]
    assert w.X.shape == (m, 128) and w.Phi.shape == (1, 128) and w.transform.shape == (128, 128)
    np.testing.assert_allclose(w.X.T @ w.X / m, np.eye(128), atol=F64_TOL)
    np.testing.assert_allclose(w.X.mean(axis=0), 0.0, atol=F64_TOL)
    # Phi = Y^T X_w / m with the targets as given (centering Y does not change it).
    np.testing.assert_allclose(w.Phi, y.T @ w.X / m, atol=F64_TOL)
    # W = Phi on whitened inputs is the least-squares fit of centered y on centered X.
    X_c, y_c = X - X.mean(axis=0), y - y.mean(axis=0)
    coef, *_ = np.linalg.lstsq(X_c, y_c, rcond=None)
    np.testing.assert_allclose(w.X @ w.Phi.T, X_c @ coef, atol=1e-8)
    # The returned transform whitens the original inputs, up to eps * cond(X) round-off.
    tol = 10 * EPS * np.linalg.cond(X_c)
    np.testing.assert_allclose((X - w.mean) @ w.transform, w.X, atol=tol)


def test_whiten_scale_labels_unit_phi(whitened_gas):
    X, _, plain = whitened_gas(True)
    _, _, w = whitened_gas(True, scale_labels=True)
    assert np.linalg.norm(w.Phi) == pytest.approx(1.0, abs=F64_TOL)
    assert w.label_scale == pytest.approx(1.0 / np.linalg.norm(plain.Phi), rel=F64_TOL)
    np.testing.assert_allclose(w.Phi, w.Y.T @ w.X / X.shape[0], atol=F64_TOL)
    np.testing.assert_allclose(w.Y, plain.Y * w.label_scale, atol=F64_TOL)
    np.testing.assert_array_equal(w.X, plain.X)


@pytest.mark.parametrize("scale_labels", [False, True])
def test_whitened_l2_is_l2_up_to_a_constant(whitened_gas, scale_labels):
    # (1/m) sum ||W x - y||^2 = ||W - Phi||_F^2 + (1/m)||Y||_F^2 - ||Phi||_F^2 when
    # X_w^T X_w / m = I, i.e. l2 = 2 * (1/2 ||W - Phi||^2) + const (THEORY.md §2).
    X, _, w = whitened_gas(True, scale_labels=scale_labels)
    m = X.shape[0]
    Xw, Yw, Phi = jnp.asarray(w.X), jnp.asarray(w.Y), jnp.asarray(w.Phi)
    const = float(np.sum(w.Y**2) / m - np.sum(w.Phi**2))
    rng = np.random.default_rng(1)
    offsets = []
    for W in (np.zeros_like(w.Phi), rng.normal(size=w.Phi.shape)):
        W = jnp.asarray(W)
        l2 = float(lp_loss(W, Xw, Yw, p=2))
        offsets.append(l2 - 2 * float(whitened_l2_loss(W, Phi)))
    assert offsets[0] == pytest.approx(offsets[1], abs=F64_TOL)
    assert offsets[0] == pytest.approx(const, abs=F64_TOL)
    assert float(lp_loss(Phi, Xw, Yw, p=2)) == pytest.approx(const, abs=F64_TOL)  # the optimum


def test_whiten_drops_numerically_zero_directions():
    rng = np.random.default_rng(2)
    m = 40
    X = rng.normal(size=(m, 3))
    X = np.column_stack([X, X[:, 0] - 2 * X[:, 1]])  # rank 3 after centering
    Y = rng.normal(size=(m, 1))
    w = whiten(X, Y)
    assert w.X.shape == (m, 3) and w.transform.shape == (4, 3) and w.Phi.shape == (1, 3)
    np.testing.assert_allclose(w.X.T @ w.X / m, np.eye(3), atol=F64_TOL)
    X_c = X - X.mean(axis=0)
    coef, *_ = np.linalg.lstsq(X_c, Y - Y.mean(axis=0), rcond=None)
    np.testing.assert_allclose(w.X @ w.Phi.T, X_c @ coef, atol=F64_TOL)


def test_whiten_rtol_is_relative_to_largest_singular_value():
    rng = np.random.default_rng(3)
    m = 50
    Z = rng.normal(size=(m, 3))
    U, _ = np.linalg.qr(Z - Z.mean(axis=0))  # orthonormal columns, each summing to 0
    R, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    X = U * np.array([10.0, 1.0, 1e-3]) @ R.T  # singular values of X_c: 10, 1, 1e-3
    Y = rng.normal(size=(m, 1))
    # direction i is kept iff s_i > rtol * s_max
    assert whiten(X, Y).X.shape[1] == 3
    assert whiten(X, Y, rtol=5e-5).X.shape[1] == 3
    assert whiten(X, Y, rtol=2e-4).X.shape[1] == 2
    assert whiten(X, Y, rtol=0.05).X.shape[1] == 2
    assert whiten(X, Y, rtol=0.2).X.shape[1] == 1
    w = whiten(X, Y, rtol=2e-4)
    np.testing.assert_allclose(w.X.T @ w.X / m, np.eye(2), atol=F64_TOL)
    np.testing.assert_allclose(np.abs(w.X), np.abs(np.sqrt(m) * U[:, :2]), atol=F64_TOL)


def test_whiten_keeps_dtype():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(30, 3)).astype(np.float32)
    w = whiten(X, X[:, :1] ** 2)
    assert {a.dtype for a in w[:5]} == {np.dtype(np.float32)}
    np.testing.assert_allclose(w.X.T @ w.X / 30, np.eye(3), atol=1e-5)


def test_whiten_errors():
    rng = np.random.default_rng(5)
    X, Y = rng.normal(size=(10, 3)), rng.normal(size=(10, 1))
    with pytest.raises(ValueError, match=r"`X` and `Y` must have the same number of rows.*\(9, 1"):
        whiten(X, Y[:9])
    bad = X.copy()
    bad[0, 0] = np.inf
    with pytest.raises(ValueError, match="`X` must be finite, but has 1 NaN/Inf"):
        whiten(bad, Y)
    with pytest.raises(ValueError, match="`Y` must be finite"):
        whiten(X, np.full((10, 1), np.nan))
    with pytest.raises(ValueError, match="`Y` must have rank 2"):
        whiten(X, Y[:, 0])
    with pytest.raises(ValueError, match="`X` must have rank 2"):
        whiten(X[None], Y)
    with pytest.raises(TypeError, match="`X` must have a real floating dtype"):
        whiten(np.ones((10, 3), dtype=np.int32), Y)
    with pytest.raises(ValueError, match="`X` has no variance"):
        whiten(np.ones((10, 3)), Y)
    with pytest.raises(ValueError, match="`X` must have at least 2 rows"):
        whiten(X[:1], Y[:1])
    with pytest.raises(ValueError, match=r"`rtol` must be in \[0, 1\), but is 1.0"):
        whiten(X, Y, rtol=1.0)
    with pytest.raises(ValueError, match="`Y` is uncorrelated with `X`"):
        whiten(X, np.full((10, 1), 3.0), scale_labels=True)


# --------------------------------------------------------------------------------------
# MNIST
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mnist(mnist_dir) -> MNIST:
    return load_mnist(mnist_dir)


def _mnist_copy(src: Path, dest: Path, *, replace: dict[str, bytes] | None = None) -> Path:
    """``dest`` with a symlink to each ``src/*.gz``, or the given bytes for named files."""
    dest.mkdir(parents=True, exist_ok=True)
    replace = replace or {}
    for name in MNIST_NAMES:
        if name + ".gz" in replace:
            (dest / (name + ".gz")).write_bytes(replace[name + ".gz"])
        elif name in replace:
            (dest / name).write_bytes(replace[name])
        else:
            os.symlink(src / (name + ".gz"), dest / (name + ".gz"))
    return dest


def _labels_raw(mnist_dir: Path) -> bytes:
    return gzip.decompress((mnist_dir / "train-labels-idx1-ubyte.gz").read_bytes())


def test_mnist_shapes_and_dtypes(mnist):
    assert mnist.train_images.shape == (60000, 28, 28)
    assert mnist.train_labels.shape == (60000,)
    assert mnist.test_images.shape == (10000, 28, 28)
    assert mnist.test_labels.shape == (10000,)
    assert {a.dtype for a in mnist} == {np.dtype(np.uint8)}
    assert all(a.flags.writeable for a in mnist)


def test_mnist_contents(mnist):
    np.testing.assert_array_equal(np.bincount(mnist.train_labels, minlength=10), TRAIN_LABEL_COUNTS)
    np.testing.assert_array_equal(np.bincount(mnist.test_labels, minlength=10), TEST_LABEL_COUNTS)
    np.testing.assert_array_equal(mnist.train_labels[:10], FIRST_TRAIN_LABELS)
    np.testing.assert_array_equal(mnist.test_labels[:10], FIRST_TEST_LABELS)
    counts = np.bincount(mnist.train_images.ravel(), minlength=256)  # pixel histogram
    levels = np.arange(256) / 255.0
    mean = counts @ levels / counts.sum()
    std = np.sqrt(counts @ (levels - mean) ** 2 / counts.sum())
    assert mean == pytest.approx(TRAIN_PIXEL_MEAN, abs=1e-4)
    assert std == pytest.approx(TRAIN_PIXEL_STD, abs=1e-4)


def test_mnist_checksums_are_the_published_ones(mnist_dir):
    lines = (mnist_dir / "MD5SUMS").read_text().splitlines()
    published = {name: md5 for md5, name in (line.split() for line in lines)}
    assert {spec.filename: spec.md5 for spec in datasets._MNIST_FILES.values()} == published


def _set_byte(raw: bytes, index: int, value: int) -> bytes:
    data = bytearray(raw)
    data[index] = value
    return bytes(data)


def _flip(raw: bytes, index: int) -> bytes:
    return _set_byte(raw, index, raw[index] ^ 0xFF)


LABELS_MD5 = "a25bea736e30d166cdddb491f175f624"
IDX_CORRUPTIONS = {  # id: (make corrupt file bytes from the raw IDX bytes, gzip?, message)
    "truncated-gz": (
        lambda raw: gzip.compress(raw)[:200], True, "not a valid gzip file or truncated"
    ),
    "flipped-gz-byte": (
        lambda raw: _flip(gzip.compress(raw), 10_000), True, "not a valid gzip file or truncated"
    ),
    "empty": (lambda raw: b"", True, "truncated, expected 60008 bytes of IDX data, found 0"),
    "bad-magic": (
        lambda raw: gzip.compress(_set_byte(raw, 3, 3)),
        True,
        "bad IDX magic number, expected 2049 .*found 2051",
    ),
    "truncated-idx": (
        lambda raw: gzip.compress(raw[:-100]),
        True,
        "truncated, expected 60008 bytes of IDX data, found 59908",
    ),
    "trailing-data": (
        lambda raw: gzip.compress(raw + b"\0"),
        True,
        "trailing data, expected 60008 bytes of IDX data, found 60009",
    ),
    "wrong-dims": (
        lambda raw: gzip.compress(_set_byte(raw, 7, 0x5F)),
        True,
        r"IDX dimensions are \(59999,\), expected \(60000,\)",
    ),
    "flipped-byte": (
        lambda raw: gzip.compress(_flip(raw, 1000)),
        True,
        f"MD5 of the decompressed content is [0-9a-f]{{32}}, expected {LABELS_MD5}",
    ),
    "flipped-byte-raw": (
        lambda raw: _flip(raw, 1000),
        False,
        f"MD5 of the content is [0-9a-f]{{32}}, expected {LABELS_MD5}",
    ),
}


@pytest.mark.parametrize(
    "make, compressed, message", IDX_CORRUPTIONS.values(), ids=IDX_CORRUPTIONS.keys()
)
def test_idx_corruption_raises(mnist_dir, tmp_path, make, compressed, message):
    spec = datasets._MNIST_FILES["train_labels"]
    path = tmp_path / (spec.filename + (".gz" if compressed else ""))
    raw = _labels_raw(mnist_dir)
    path.write_bytes(gzip.compress(raw) if compressed else raw)
    np.testing.assert_array_equal(np.bincount(datasets._read_idx(path, spec)), TRAIN_LABEL_COUNTS)
    path.write_bytes(make(raw))
    with pytest.raises(ValueError, match=re.escape(str(path)) + ": " + message):
        datasets._read_idx(path, spec)


def test_load_mnist_corrupt_file_names_it(mnist_dir, tmp_path):
    raw = _labels_raw(mnist_dir)
    name = "train-labels-idx1-ubyte.gz"
    folder = _mnist_copy(mnist_dir, tmp_path / "m", replace={name: gzip.compress(raw[:-1])})
    with pytest.raises(ValueError, match=re.escape(str(folder / name)) + ": truncated"):
        load_mnist(folder)


def test_load_mnist_reads_uncompressed_files(mnist_dir, mnist, tmp_path):
    raw = _labels_raw(mnist_dir)
    test_raw = gzip.decompress((mnist_dir / "t10k-labels-idx1-ubyte.gz").read_bytes())
    replace = {"train-labels-idx1-ubyte": raw, "t10k-labels-idx1-ubyte": test_raw}
    folder = _mnist_copy(mnist_dir, tmp_path / "m", replace=replace)
    got = load_mnist(folder)
    np.testing.assert_array_equal(got.train_labels, mnist.train_labels)
    np.testing.assert_array_equal(got.test_labels, mnist.test_labels)


@pytest.mark.parametrize("subfolder", ["", "mnist"])
def test_load_mnist_finds_env_data_dir(mnist_dir, mnist, tmp_path, monkeypatch, subfolder):
    root = tmp_path / "data"
    _mnist_copy(mnist_dir, root / subfolder)
    monkeypatch.setenv("OVERPARAM_JAX_DATA", str(root))
    got = load_mnist()  # the mirrors point nowhere: this must not download
    np.testing.assert_array_equal(got.train_labels, mnist.train_labels)


def test_load_mnist_search_order(mnist_dir, tmp_path, monkeypatch):
    """data_dir, then $OVERPARAM_JAX_DATA, then the cache: a corrupt copy earlier in the
    order is reported even when a good one sits later (so the order is observable)."""
    corrupt = {"train-labels-idx1-ubyte.gz": gzip.compress(_labels_raw(mnist_dir)[:-1])}
    cache = _mnist_copy(mnist_dir, Path(os.environ["OVERPARAM_JAX_CACHE"]) / "mnist")
    env = _mnist_copy(mnist_dir, tmp_path / "env", replace=corrupt)
    monkeypatch.setenv("OVERPARAM_JAX_DATA", str(env))
    with pytest.raises(ValueError, match=re.escape(str(env))):
        load_mnist()
    explicit = _mnist_copy(mnist_dir, tmp_path / "explicit", replace=corrupt)
    with pytest.raises(ValueError, match=re.escape(str(explicit))):
        load_mnist(explicit)
    # An incomplete folder is skipped: the next complete one (the cache) is used.
    incomplete = tmp_path / "incomplete"
    incomplete.mkdir()
    os.symlink(mnist_dir / "t10k-labels-idx1-ubyte.gz", incomplete / "t10k-labels-idx1-ubyte.gz")
    monkeypatch.delenv("OVERPARAM_JAX_DATA")
    assert load_mnist(incomplete).test_labels.shape == (10000,)  # from `cache`


def test_load_mnist_without_files_or_download(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"download=False.*missing train-images-idx3-ubyte"):
        load_mnist(tmp_path, download=False)


def test_download_into_cache(mnist_dir, mnist, tmp_path, monkeypatch):
    empty_mirror = tmp_path / "empty-mirror"
    empty_mirror.mkdir()
    mirrors = (empty_mirror.as_uri() + "/", mnist_dir.as_uri() + "/")
    monkeypatch.setattr(datasets, "_MNIST_MIRRORS", mirrors)
    got = load_mnist()
    for a, b in zip(got, mnist):
        np.testing.assert_array_equal(a, b)
    cache = Path(os.environ["OVERPARAM_JAX_CACHE"]) / "mnist"
    assert sorted(p.name for p in cache.iterdir()) == sorted(n + ".gz" for n in MNIST_NAMES)
    for name in MNIST_NAMES:
        assert (cache / (name + ".gz")).read_bytes() == (mnist_dir / (name + ".gz")).read_bytes()
    # Now cached: no mirror needed.
    monkeypatch.setattr(datasets, "_MNIST_MIRRORS", ())
    np.testing.assert_array_equal(load_mnist().test_labels, mnist.test_labels)


def test_download_with_bad_checksum_leaves_nothing(mnist_dir, tmp_path, monkeypatch):
    raw = _labels_raw(mnist_dir)
    bad = gzip.compress(_flip(raw, 1000))
    replace = {"train-labels-idx1-ubyte.gz": bad}
    mirror = _mnist_copy(mnist_dir, tmp_path / "bad-mirror", replace=replace)
    monkeypatch.setattr(datasets, "_MNIST_MIRRORS", (mirror.as_uri() + "/",))
    message = f"train-labels-idx1-ubyte.gz.*MD5.*{LABELS_MD5}.*discarded"
    with pytest.raises(ValueError, match=message):
        load_mnist()
    cache = Path(os.environ["OVERPARAM_JAX_CACHE"]) / "mnist"
    # Only the file fetched (and verified) before the bad one is there; no partial files.
    assert [p.name for p in cache.iterdir()] == ["t10k-labels-idx1-ubyte.gz"]


def test_download_failure_on_every_mirror(tmp_path):
    message = "could not download t10k-labels-idx1-ubyte.gz.*no-mirror.*data_dir="
    with pytest.raises(OSError, match=message):
        load_mnist()
    cache = Path(os.environ["OVERPARAM_JAX_CACHE"]) / "mnist"
    assert list(cache.iterdir()) == []
