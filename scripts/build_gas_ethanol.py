"""Build overparam_jax/data/gas_ethanol.npz from the UCI gas-sensor Ethanol CSV.

Source: ``ethanol_uci_datasets_gas_data.csv.gz`` (uci_datasets "gas", commit f0737523;
see ../shared/data/gas_sensor/PROVENANCE.txt and DATA.md): 2565 rows, 129 comma-separated
columns (128 features, then the target), no header. The script checks the source's
SHA-256, parses it to float64, and writes ``X`` (2565, 128) and ``y`` (2565, 1) into a
deflate-compressed ``.npz`` whose bytes depend only on the data (fixed zip timestamps,
fixed member order and compression level), so rebuilding gives the same file.

It prints the array digest that ``overparam_jax.datasets`` checks on load
(``_GAS_ETHANOL_SHA256``) and whether it matches; if the source ever changes on purpose,
update that constant with the printed value.

Usage::

    python scripts/build_gas_ethanol.py [--source CSV_GZ] [--output NPZ]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
import zipfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = (
    REPO.parent / "shared" / "data" / "gas_sensor" / "ethanol_uci_datasets_gas_data.csv.gz"
)
DEFAULT_OUTPUT = REPO / "overparam_jax" / "data" / "gas_ethanol.npz"
SOURCE_SHA256 = "bd82bee47199d3952bee30a59739794b26baa742e1da7f7bd42b9a34552321a1"
ROWS, FEATURES = 2565, 128
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # earliest date a zip entry can carry


def read_source(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Verify the source's SHA-256 and parse it into ``X`` (m, 128) and ``y`` (m, 1)."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != SOURCE_SHA256:
        raise SystemExit(f"{path}: SHA-256 is {digest}, expected {SOURCE_SHA256}.")
    data = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2)
    if data.shape != (ROWS, FEATURES + 1):
        raise SystemExit(f"{path}: expected shape {(ROWS, FEATURES + 1)}, found {data.shape}.")
    if not np.all(np.isfinite(data)):
        raise SystemExit(f"{path}: contains non-finite values.")
    X = np.ascontiguousarray(data[:, :FEATURES])
    y = np.ascontiguousarray(data[:, FEATURES:])
    return X, y


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` as an ``.npz`` that ``np.load`` reads, byte-for-byte reproducibly."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buffer.getvalue(), compresslevel=9)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)

    X, y = read_source(args.source)
    write_npz(args.output, {"X": X, "y": y})

    sys.path.insert(0, str(REPO))
    from overparam_jax import datasets

    digest = datasets._gas_arrays_digest(X, y)
    file_digest = hashlib.sha256(args.output.read_bytes()).hexdigest()
    print(f"wrote {args.output} ({args.output.stat().st_size} bytes, sha256 {file_digest})")
    print(f"X {X.shape} y {y.shape} float64; array digest {digest}")
    if digest != datasets._GAS_ETHANOL_SHA256:
        print(
            "array digest differs from overparam_jax.datasets._GAS_ETHANOL_SHA256 = "
            f"{datasets._GAS_ETHANOL_SHA256}; update the constant if the change is intended."
        )
        return 1
    print("array digest matches overparam_jax.datasets._GAS_ETHANOL_SHA256")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
