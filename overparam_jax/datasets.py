r"""Datasets of the paper experiments and PCA whitening (THEORY.md §2, §8).

* :func:`load_gas_ethanol` — the UCI "Gas Sensor Array Drift at Different
  Concentrations" Ethanol regression problem of E1/E2: ``X`` of shape ``(2565, 128)`` and
  ``y`` of shape ``(2565, 1)``, float64 NumPy arrays, read from a compressed copy shipped
  inside the package (``overparam_jax/data/gas_ethanol.npz``, built by
  ``scripts/build_gas_ethanol.py``) and checked against a SHA-256 on every load.
* :func:`standardize_columns` — per-column zero mean and unit standard deviation (E1).
* :func:`whiten` — PCA-whitened inputs :math:`X_w` with :math:`X_w^\top X_w / m = I` and
  the whitened-ℓ2 target :math:`\Phi = Y^\top X_w / m` (E2), as a :class:`Whitened`.
* :func:`load_mnist` — the four MNIST IDX files (E3), found on disk or downloaded into a
  user cache, checked against the standard MD5 sums, as an :class:`MNIST`.

These are preprocessing steps, run once before training: they take and return NumPy
arrays and compute in float64 on the host. Callers convert with ``jnp.asarray``.
Provenance, licences and citations of the data: ``DATA.md``.

References:
    Vergara, Vembu, Ayhan, Ryan, Homer, Huerta. Chemical gas sensor drift compensation
    using classifier ensembles. Sensors and Actuators B 166:320-329, 2012 (UCI dataset
    270, DOI 10.24432/C5MK6M, CC BY 4.0).
    LeCun, Bottou, Bengio, Haffner. Gradient-based learning applied to document
    recognition. Proc. IEEE 86(11):2278-2324, 1998 (MNIST).
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import importlib.resources
import logging
import math
import os
import tempfile
import urllib.request
import zipfile
import zlib
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from overparam_jax._validation import (
    require_finite,
    require_finite_scalar,
    require_float_array,
    require_regression_data,
)

__all__ = [
    "MNIST",
    "Whitened",
    "cache_root",
    "load_gas_ethanol",
    "load_mnist",
    "standardize_columns",
    "whiten",
]

_logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------
# Gas sensor, Ethanol
# --------------------------------------------------------------------------------------

_GAS_ETHANOL_FILE = "gas_ethanol.npz"
_GAS_ETHANOL_SHAPES = {"X": (2565, 128), "y": (2565, 1)}
# SHA-256 of X.tobytes() + y.tobytes(), both little-endian float64 in C order, as written
# by scripts/build_gas_ethanol.py from ethanol_uci_datasets_gas_data.csv.gz
# (sha256 bd82bee47199d3952bee30a59739794b26baa742e1da7f7bd42b9a34552321a1).
_GAS_ETHANOL_SHA256 = "da96c632d680154cbbdac3d4f84ba0923c87ede656ba0636b85f4ac0c1a581ee"


def _gas_arrays_digest(X: np.ndarray, y: np.ndarray) -> str:
    """SHA-256 of ``X`` then ``y`` as little-endian float64 C-order bytes."""
    h = hashlib.sha256()
    for a in (X, y):
        h.update(np.ascontiguousarray(a, dtype="<f8").tobytes())
    return h.hexdigest()


def _load_gas_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read and verify the shipped ``gas_ethanol.npz`` at ``path``."""
    hint = "reinstall overparam_jax or rebuild it with scripts/build_gas_ethanol.py"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the packaged gas-sensor data is missing; {hint}.")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError) as e:
        raise ValueError(
            f"{path}: cannot read the gas-sensor data, the file is corrupt or truncated "
            f"({type(e).__name__}: {e}); {hint}."
        ) from e
    if sorted(arrays) != sorted(_GAS_ETHANOL_SHAPES):
        raise ValueError(
            f"{path}: expected arrays {sorted(_GAS_ETHANOL_SHAPES)}, found {sorted(arrays)}; "
            f"{hint}."
        )
    X, y = arrays["X"], arrays["y"]
    for name, a in (("X", X), ("y", y)):
        expected = _GAS_ETHANOL_SHAPES[name]
        if a.shape != expected or a.dtype != np.float64:
            raise ValueError(
                f"{path}: array `{name}` should be float64 of shape {expected}, but is "
                f"{a.dtype} of shape {a.shape}; {hint}."
            )
    digest = _gas_arrays_digest(X, y)
    if digest != _GAS_ETHANOL_SHA256:
        raise ValueError(
            f"{path}: SHA-256 of the arrays is {digest}; expected {_GAS_ETHANOL_SHA256} "
            f"(the file is corrupt or from another build); {hint}."
        )
    return X, y


def load_gas_ethanol(*, standardize: bool = False) -> tuple[np.ndarray, np.ndarray]:
    r"""The UCI gas-sensor Ethanol regression problem (THEORY.md §8, E1 and E2).

    The Ethanol subset of "Gas Sensor Array Drift at Different Concentrations" (UCI 270,
    all 10 batches) as prepared by the ``uci_datasets`` "gas" benchmark: 2565 examples,
    128 sensor features, a scalar target. As shipped, each feature column is
    mean-centered and rounded to 5 significant digits (column means are within 0.01
    of zero, not exactly zero), on raw sensor scales: column standard deviations range
    from about 0.53 to 4.2e4 and the condition number of ``X`` is about 1.2e7. The target
    is a standardized monotone transform of the ethanol concentration (35 distinct values).

    The arrays are read from ``overparam_jax/data/gas_ethanol.npz`` and their SHA-256 is
    checked on every call. A fresh copy is returned each time.

    Args:
        standardize: apply :func:`standardize_columns` to ``X`` (zero mean, unit std per
            column), as E1 prescribes before training. Default ``False``: the data as
            shipped. ``y`` is returned as shipped either way.

    Returns:
        ``(X, y)``: float64 NumPy arrays of shapes ``(2565, 128)`` and ``(2565, 1)``.

    Raises:
        ValueError: if the shipped file is missing arrays, truncated or corrupt (names the
            file and the expected vs found checksum or shape).
        FileNotFoundError: if the package was installed without its data file.

    Examples:
        >>> X, y = load_gas_ethanol(standardize=True)
        >>> X.shape, y.shape
        ((2565, 128), (2565, 1))
    """
    ref = importlib.resources.files("overparam_jax").joinpath("data", _GAS_ETHANOL_FILE)
    with importlib.resources.as_file(ref) as path:
        X, y = _load_gas_npz(Path(path))
    if standardize:
        X = standardize_columns(X)
    return X, y


def standardize_columns(X: Any) -> np.ndarray:
    r"""Per-column standardization :math:`(X_{ij} - \mu_j) / \sigma_j`.

    :math:`\mu_j` is the column mean and :math:`\sigma_j` the population standard
    deviation (``ddof=0``), so every output column has mean 0 and standard deviation 1.

    Args:
        X: ``(m, d)`` real floating-point array (NumPy or JAX), finite.

    Returns:
        A new NumPy array of the same shape and dtype as ``X``.

    Raises:
        ValueError: if ``X`` is not 2-D, not finite, or has a constant column.
    """
    require_float_array("X", X, ndim=2)
    require_finite("X", X)
    X = np.asarray(X)
    X64 = X.astype(np.float64)
    mean = X64.mean(axis=0)
    std = X64.std(axis=0)
    # max == min, not std == 0: the rounded mean of equal values can differ from them.
    constant = np.flatnonzero((np.ptp(X64, axis=0) == 0) | (std == 0))
    if constant.size:
        raise ValueError(
            f"`X` must have non-constant columns to standardize, but columns "
            f"{constant.tolist()} have standard deviation 0."
        )
    return ((X64 - mean) / std).astype(X.dtype)


# --------------------------------------------------------------------------------------
# Whitening
# --------------------------------------------------------------------------------------


class Whitened(NamedTuple):
    r"""PCA-whitened regression data, from :func:`whiten`.

    With ``k`` the number of kept principal directions (``k = X.shape[1] <= d_0``):

    Attributes:
        X: :math:`X_w`, shape ``(m, k)``, centered, with :math:`X_w^\top X_w / m = I_k`;
            column ``i`` is the ``i``-th principal direction (eigenvalues decreasing).
        Y: the centered (and, with ``scale_labels``, rescaled) targets, shape ``(m, d_N)``.
        Phi: :math:`\Phi = Y^\top X_w / m`, shape ``(d_N, k)``, the whitened-ℓ2 target.
        mean: the column means of the original ``X``, shape ``(d_0,)``.
        transform: :math:`V \operatorname{diag}(\lambda^{-1/2})`, shape ``(d_0, k)``, so that
            ``(X_new - mean) @ transform`` whitens new inputs the same way, and a map
            ``W`` on whitened inputs is ``W @ transform.T`` on centered original inputs.
        label_scale: the factor applied to the centered targets (1.0 unless
            ``scale_labels``), a float.
    """

    X: np.ndarray
    Y: np.ndarray
    Phi: np.ndarray
    mean: np.ndarray
    transform: np.ndarray
    label_scale: float


def whiten(X: Any, Y: Any, *, scale_labels: bool = False, rtol: float | None = None) -> Whitened:
    r"""PCA-whiten the inputs and form the whitened-ℓ2 target (THEORY.md §2, E2).

    Center :math:`X_c = X - \bar x`, :math:`Y_c = Y - \bar y`, and let
    :math:`X_c^\top X_c / m = V \operatorname{diag}(\lambda) V^\top`. Then

    .. math:: X_w = X_c V \operatorname{diag}(\lambda^{-1/2}), \qquad
              X_w^\top X_w / m = I, \qquad \Phi = Y_c^\top X_w / m = Y^\top X_w / m,

    and for every ``W`` (THEORY.md §2, with the talk's ℓ2 without a 1/2)

    .. math:: \ell_2(W) = \tfrac1m \|X_w W^\top - Y_c\|_F^2
              = \|W - \Phi\|_F^2 + \tfrac1m\|Y_c\|_F^2 - \|\Phi\|_F^2,

    i.e. ``lp_loss(W, X_w, Y_c, p=2) == 2 * whitened_l2_loss(W, Phi) + const``.

    The decomposition is computed from the thin SVD :math:`X_c = U S V^\top`
    (:math:`\lambda = s^2 / m`), and :math:`X_w = \sqrt m\, U` exactly, which is the
    formula above without squaring the condition number of ``X`` (the raw gas-sensor
    inputs have condition number ~1e7, their covariance ~1e14). Each direction's sign is
    fixed so that the largest-magnitude entry of its column of ``V`` is positive.

    Directions with :math:`s_i \le \mathrm{rtol}\cdot s_{\max}`, i.e. eigenvalues
    :math:`\lambda_i \le \mathrm{rtol}^2 \lambda_{\max}`, are numerically zero and are
    dropped; ``X_w.shape[1]`` is the number kept. ``Y`` is always centered (the linear
    model has no bias; since :math:`X_w` is centered this does not change ``Phi``, only
    the constant above).

    Args:
        X: inputs ``(m, d_0)``, real floating, finite, ``m >= 2``.
        Y: targets ``(m, d_N)``, real floating, finite.
        scale_labels: divide the centered ``Y`` (hence ``Phi``) by :math:`\|\Phi\|_F` so
            that :math:`\|\Phi\|_F = 1` (E2: "labels scaled so ‖Φ‖_F = 1"). Default ``False``.
        rtol: relative tolerance on the singular values of :math:`X_c`, in ``[0, 1)``.
            Default ``max(m, d_0) * eps`` (float64 eps; NumPy's ``matrix_rank`` rule).

    Returns:
        :class:`Whitened` ``(X, Y, Phi, mean, transform, label_scale)``: NumPy arrays in
        the floating dtype of ``X`` and ``Y`` combined (computed in float64).

    Raises:
        TypeError: if ``X`` or ``Y`` is not a real floating array.
        ValueError: if they are not 2-D, differ in rows, are not finite, ``X`` has fewer
            than 2 rows or no direction of non-zero variance, ``rtol`` is out of range, or
            ``scale_labels`` is set while ``Phi = 0``.

    Examples:
        >>> import numpy as np
        >>> X = np.random.default_rng(0).normal(size=(100, 3)) @ np.diag([1.0, 10.0, 1e3])
        >>> w = whiten(X, X[:, :1] + 1.0)
        >>> bool(np.allclose(w.X.T @ w.X / 100, np.eye(3)))
        True
    """
    require_regression_data(X, Y)
    require_finite("X", X)
    require_finite("Y", Y)
    m, d_0 = X.shape
    if m < 2:
        raise ValueError(f"`X` must have at least 2 rows to whiten, but has shape {(m, d_0)}.")
    dtype = np.result_type(np.asarray(X).dtype, np.asarray(Y).dtype)
    eps = np.finfo(np.float64).eps
    if rtol is None:
        rtol = max(m, d_0) * eps
    require_finite_scalar("rtol", rtol)
    if not 0.0 <= float(rtol) < 1.0:
        raise ValueError(f"`rtol` must be in [0, 1), but is {rtol}.")

    X64 = np.asarray(X, dtype=np.float64)
    Y64 = np.asarray(Y, dtype=np.float64)
    mean = X64.mean(axis=0)
    X_c = X64 - mean
    Y_c = Y64 - Y64.mean(axis=0)

    U, s, Vt = np.linalg.svd(X_c, full_matrices=False)
    if not s[0] > 0:
        raise ValueError("`X` has no variance: every column is constant, nothing to whiten.")
    k = int(np.count_nonzero(s > rtol * s[0]))
    U, s, V = U[:, :k], s[:k], Vt[:k].T
    signs = np.sign(V[np.argmax(np.abs(V), axis=0), np.arange(k)])
    U, V = U * signs, V * signs

    sqrt_m = math.sqrt(m)
    X_w = sqrt_m * U
    transform = V * (sqrt_m / s)  # V diag(1/sqrt(lambda)), lambda = s^2 / m
    Phi = Y_c.T @ X_w / m
    label_scale = 1.0
    if scale_labels:
        norm = float(np.linalg.norm(Phi))
        if not norm > 0:
            raise ValueError(
                "`Y` is uncorrelated with `X` (Phi = Y^T X_w / m = 0), so it cannot be scaled "
                "to ||Phi||_F = 1 (`scale_labels=True`)."
            )
        label_scale = 1.0 / norm
        Y_c = Y_c * label_scale
        Phi = Phi * label_scale
    return Whitened(
        X=X_w.astype(dtype),
        Y=Y_c.astype(dtype),
        Phi=Phi.astype(dtype),
        mean=mean.astype(dtype),
        transform=transform.astype(dtype),
        label_scale=label_scale,
    )


# --------------------------------------------------------------------------------------
# MNIST
# --------------------------------------------------------------------------------------


class MNIST(NamedTuple):
    """The MNIST digits, from :func:`load_mnist`: uint8 pixels in 0..255, labels 0..9.

    Attributes:
        train_images: ``(60000, 28, 28)`` uint8.
        train_labels: ``(60000,)`` uint8.
        test_images: ``(10000, 28, 28)`` uint8.
        test_labels: ``(10000,)`` uint8.
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


class _IdxSpec(NamedTuple):
    filename: str  # without ".gz"
    md5: str  # of the decompressed file (the standard MNIST sums)
    shape: tuple[int, ...]


_MNIST_FILES = {
    "train_images": _IdxSpec(
        "train-images-idx3-ubyte", "6bbc9ace898e44ae57da46a324031adb", (60000, 28, 28)
    ),
    "train_labels": _IdxSpec(
        "train-labels-idx1-ubyte", "a25bea736e30d166cdddb491f175f624", (60000,)
    ),
    "test_images": _IdxSpec(
        "t10k-images-idx3-ubyte", "2646ac647ad5339dbf082846283269ea", (10000, 28, 28)
    ),
    "test_labels": _IdxSpec(
        "t10k-labels-idx1-ubyte", "27ae3e4e09519cfbb04c329615203637", (10000,)
    ),
}
# Smallest first, so that a corrupt small file is reported before decoding 47 MB.
_MNIST_READ_ORDER = ("test_labels", "train_labels", "test_images", "train_images")

_MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
_DOWNLOAD_TIMEOUT_S = 60.0


def _idx_magic(ndim: int) -> int:
    """IDX magic number for unsigned-byte data of ``ndim`` dimensions (2049, 2051)."""
    return 0x0800 | ndim


def _read_idx(path: Path, spec: _IdxSpec) -> np.ndarray:
    """Decode and verify the IDX file at ``path`` (gzip-compressed if named ``*.gz``)."""
    return _decode_idx(
        path.read_bytes(), spec, source=str(path), compressed=path.name.endswith(".gz")
    )


def _decode_idx(data: bytes, spec: _IdxSpec, *, source: str, compressed: bool) -> np.ndarray:
    """Decode and verify IDX bytes read from ``source`` (a path or URL, for messages)."""
    if compressed:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:
            raise ValueError(
                f"{source}: not a valid gzip file or truncated ({type(e).__name__}: {e})."
            ) from e
    ndim = len(spec.shape)
    header = 4 + 4 * ndim
    expected_len = header + math.prod(spec.shape)
    truncated = (
        f"{source}: truncated, expected {expected_len} bytes of IDX data, found {len(data)}."
    )
    if len(data) < 4:
        raise ValueError(truncated)
    magic = int.from_bytes(data[:4], "big")
    if magic != _idx_magic(ndim):
        raise ValueError(
            f"{source}: bad IDX magic number, expected {_idx_magic(ndim)} (unsigned bytes, "
            f"{ndim} dimensions), found {magic}."
        )
    if len(data) < header:
        raise ValueError(truncated)
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if dims != spec.shape:
        raise ValueError(f"{source}: IDX dimensions are {dims}, expected {spec.shape}.")
    if len(data) < expected_len:
        raise ValueError(truncated)
    if len(data) > expected_len:
        raise ValueError(
            f"{source}: trailing data, expected {expected_len} bytes of IDX data, "
            f"found {len(data)}."
        )
    md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
    if md5 != spec.md5:
        raise ValueError(
            f"{source}: MD5 of the {'decompressed ' if compressed else ''}content is {md5}, "
            f"expected {spec.md5} (the file is corrupt)."
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(spec.shape).copy()


def cache_root() -> Path:
    """The toolkit's cache folder (downloaded data, compiled programs):
    ``$OVERPARAM_JAX_CACHE`` if set, else ``~/.cache/overparam_jax``."""
    env = os.environ.get("OVERPARAM_JAX_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "overparam_jax"


def _mnist_search_dirs(data_dir: str | os.PathLike | None) -> list[Path]:
    dirs = []
    if data_dir is not None:
        dirs.append(Path(data_dir).expanduser())
    env = os.environ.get("OVERPARAM_JAX_DATA")
    if env:
        dirs += [Path(env).expanduser(), Path(env).expanduser() / "mnist"]
    dirs.append(cache_root() / "mnist")
    return dirs


def _find_mnist_files(directory: Path) -> dict[str, Path | None]:
    """The path of each MNIST file in ``directory`` (``name.gz`` preferred over ``name``)."""
    found: dict[str, Path | None] = {}
    for field, spec in _MNIST_FILES.items():
        found[field] = None
        for name in (spec.filename + ".gz", spec.filename):
            if (directory / name).is_file():
                found[field] = directory / name
                break
    return found


def _download_mnist_file(spec: _IdxSpec, directory: Path) -> Path:
    """Fetch ``spec.filename + '.gz'``, verify it, then move it into ``directory`` atomically.

    Nothing is written unless the download verifies; the file appears under its final name
    only through ``os.replace`` of a complete temporary file in the same folder.
    """
    dest = directory / (spec.filename + ".gz")
    failures: list[str] = []
    bad_checksum = False
    for base in _MNIST_MIRRORS:
        url = base + spec.filename + ".gz"
        try:
            _logger.info("downloading %s", url)
            with urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as response:
                data = response.read()
            _decode_idx(data, spec, source=url, compressed=True)
        except ValueError as e:
            bad_checksum = True
            failures.append(str(e))
            continue
        except (OSError, http.client.HTTPException) as e:
            failures.append(f"{url}: {type(e).__name__}: {e}")
            continue
        fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{spec.filename}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(tmp_name, dest)
        finally:
            Path(tmp_name).unlink(missing_ok=True)
        return dest
    message = f"could not download {spec.filename}.gz into {directory}; tried " + "; ".join(
        failures
    )
    if bad_checksum:
        raise ValueError(message + ". The downloaded data failed verification and was discarded.")
    raise OSError(
        message + ". Without internet access, put the four MNIST files in a folder and pass "
        "`data_dir=` or set $OVERPARAM_JAX_DATA."
    )


def load_mnist(data_dir: str | os.PathLike | None = None, *, download: bool = True) -> MNIST:
    """Load MNIST from the four IDX files, verified against the standard MD5 sums (E3).

    The files ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each gzip-compressed
    (``*.gz``, preferred) or not, are looked for in this order, and the first folder that
    holds all four is used:

    1. ``data_dir``, if given;
    2. ``$OVERPARAM_JAX_DATA``, then ``$OVERPARAM_JAX_DATA/mnist``, if that is set;
    3. the cache ``$OVERPARAM_JAX_CACHE/mnist`` (default ``~/.cache/overparam_jax/mnist``).

    Otherwise, if ``download``, the missing ``*.gz`` files are downloaded into the cache
    from https://ossci-datasets.s3.amazonaws.com/mnist/ (falling back to
    https://storage.googleapis.com/cvdf-datasets/mnist/). Each download is verified in
    memory, then written to a temporary file that is renamed into place, so the cache
    never holds a partial or corrupt file.

    Every load decompresses each file, checks its IDX magic number (2051 for images,
    2049 for labels), dimensions and length, and the MD5 of the decompressed content.

    Args:
        data_dir: a folder to look in first.
        download: download into the cache when no folder has the files. Default ``True``.

    Returns:
        :class:`MNIST` ``(train_images, train_labels, test_images, test_labels)``, uint8
        arrays of shapes ``(60000, 28, 28)``, ``(60000,)``, ``(10000, 28, 28)``,
        ``(10000,)``. For pixels in [0, 1]: ``images.astype(np.float32) / 255``.

    Raises:
        ValueError: if a file found (or downloaded) is truncated, not valid gzip, has a bad
            magic number or dimensions, or the wrong MD5 (names the file, expected vs found).
        FileNotFoundError: if ``data_dir`` is given but is not a folder, or if no folder has
            the files and ``download`` is ``False``.
        OSError: if the download fails on every mirror.
    """
    if data_dir is not None and not Path(data_dir).expanduser().is_dir():
        raise FileNotFoundError(f"`data_dir` must be an existing folder, but {data_dir} is not one.")
    searched = []
    for directory in _mnist_search_dirs(data_dir):
        files = _find_mnist_files(directory)
        missing = [_MNIST_FILES[f].filename for f, p in files.items() if p is None]
        if not missing:
            return _load_mnist_files(files)
        searched.append(f"{directory} (missing {', '.join(missing)})")
    if not download:
        raise FileNotFoundError(
            "MNIST not found and `download=False`; looked in " + "; ".join(searched) + "."
        )
    cache = cache_root() / "mnist"
    cache.mkdir(parents=True, exist_ok=True)
    files = _find_mnist_files(cache)
    for field in _MNIST_READ_ORDER:
        if files[field] is None:
            files[field] = _download_mnist_file(_MNIST_FILES[field], cache)
    return _load_mnist_files(files)


def _load_mnist_files(files: dict[str, Path]) -> MNIST:
    arrays = {field: _read_idx(files[field], _MNIST_FILES[field]) for field in _MNIST_READ_ORDER}
    return MNIST(**arrays)
