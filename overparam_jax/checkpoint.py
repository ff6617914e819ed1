"""Checkpoints: long runs save their state after every chunk and resume where they stopped.

A checkpoint file holds a *fingerprint* of what produced it and a *payload* (the state to
resume from: NumPy arrays, numbers, lists, dicts). Loading compares fingerprints first:
a checkpoint of a different configuration or library version raises
:class:`CheckpointMismatch` naming what differs, and is never silently mixed in. Files
are written atomically (temporary file, fsync, rename, :func:`~overparam_jax.results.atomic_write_bytes`),
so a run killed while saving leaves the previous checkpoint intact.

Resuming is exact: arrays round-trip bit for bit, and the runs of this toolkit are pure
functions of their state and step index (random keys are derived with ``fold_in(key,
step)``), so a resumed run equals an uninterrupted one bit for bit on the same machine
and versions.

Two levels use this module:

* one computation — :func:`overparam_jax.gradient_descent`, :func:`overparam_jax.sweep`
  and the other trajectory functions take ``checkpoint=PATH``: one file, fingerprinted by
  the method, the schedule and the bytes of the initial state and its loss and gradient
  (which pin down the init, the hyperparameters, the loss function and its data);
* one experiment — :class:`CheckpointDir` (``reproduce ... --checkpoint DIR``): a folder
  with a ``manifest.json`` of the experiment's configuration and versions, and one file
  per stage (:meth:`CheckpointDir.stage`).

The payload is stored with :mod:`pickle`: load checkpoints only from folders you trust.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import platform
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from overparam_jax.results import atomic_write_bytes, atomic_write_text, json_safe

__all__ = [
    "CheckpointDir",
    "CheckpointMismatch",
    "array_digest",
    "load_checkpoint",
    "save_checkpoint",
    "software_versions",
]

_FORMAT = 1


class CheckpointMismatch(ValueError):
    """A checkpoint exists but was written by a different configuration or version."""


def software_versions() -> dict[str, str]:
    """The versions a bit-identical resume depends on (library, JAX, XLA's backend, NumPy)."""
    import jaxlib
    import optax

    from overparam_jax import __version__

    return {
        "overparam_jax": __version__, "jax": jax.__version__, "jaxlib": jaxlib.__version__,
        "optax": optax.__version__, "numpy": np.__version__, "python": platform.python_version(),
        "backend": jax.default_backend(), "x64": str(bool(jax.config.jax_enable_x64)),
    }


def array_digest(tree: Any) -> str:
    """SHA-256 of the shapes, dtypes and bytes of every leaf of ``tree`` (in tree order)."""
    h = hashlib.sha256()
    for leaf in jax.tree_util.tree_leaves(tree):
        a = np.asarray(leaf)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _differences(found: dict[str, Any], expected: dict[str, Any]) -> list[str]:
    keys = sorted(set(found) | set(expected))
    return [f"{k}: {found.get(k, '(absent)')!r} in the checkpoint, {expected.get(k, '(absent)')!r} now"
            for k in keys if found.get(k) != expected.get(k)]


def _mismatch(path: Path, found: dict[str, Any], expected: dict[str, Any]) -> CheckpointMismatch:
    diff = _differences(found, expected)
    shown = "; ".join(d if len(d) < 240 else d[:240] + "…" for d in diff[:3])
    more = f" (and {len(diff) - 3} more)" if len(diff) > 3 else ""
    return CheckpointMismatch(
        f"checkpoint {path} was written by a different configuration or version ({shown}{more}); "
        "delete it or use another checkpoint location"
    )


def _to_numpy(tree: Any) -> Any:
    """``tree`` with its JAX arrays as NumPy arrays (other leaves unchanged)."""
    return jax.tree_util.tree_map(lambda x: np.asarray(x) if isinstance(x, jax.Array) else x, tree)


def save_checkpoint(path: str | os.PathLike, fingerprint: dict[str, Any], payload: Any) -> Path:
    """Write ``payload`` (arrays become NumPy arrays) with ``fingerprint`` atomically."""
    payload = _to_numpy(payload)
    blob = pickle.dumps({"format": _FORMAT, "fingerprint": json_safe(fingerprint), "payload": payload},
                        protocol=pickle.HIGHEST_PROTOCOL)
    return atomic_write_bytes(path, blob)


def load_checkpoint(path: str | os.PathLike, fingerprint: dict[str, Any]) -> Any | None:
    """The payload saved at ``path``, or ``None`` if there is no file.

    Raises:
        CheckpointMismatch: the file was written with another fingerprint, or is not a
            checkpoint of this format.
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        with open(path, "rb") as f:
            doc = pickle.load(f)
        found = doc["fingerprint"]
        ok = doc.get("format") == _FORMAT
    except Exception as e:  # noqa: BLE001 - any unreadable file is reported the same way
        raise CheckpointMismatch(f"checkpoint {path} is unreadable ({type(e).__name__}: {e}); "
                                 "delete it or use another checkpoint location") from None
    expected = json_safe(fingerprint)
    if not ok or found != expected:
        raise _mismatch(path, found if ok else {"format": doc.get("format")},
                        expected if ok else {"format": _FORMAT})
    return doc["payload"]


class CheckpointDir:
    """The checkpoint folder of one experiment run.

    ``manifest.json`` records the experiment, its configuration and the software versions;
    opening a folder whose manifest differs raises :class:`CheckpointMismatch`. Each stage
    of the experiment keeps its state in ``<name>.ckpt`` (:meth:`stage`).

    Args:
        path: the folder (created if needed).
        experiment: the experiment's name.
        config: its configuration, JSON-serializable.
    """

    def __init__(self, path: str | os.PathLike, *, experiment: str, config: dict[str, Any]):
        self.path = Path(path)
        manifest = {"experiment": experiment, "config": config, "versions": software_versions(),
                    "format": _FORMAT}
        self.manifest = json.loads(json.dumps(json_safe(manifest), default=str))  # as read back
        manifest_path = self.path / "manifest.json"
        if manifest_path.exists():
            try:
                found = json.loads(manifest_path.read_text())
            except (OSError, ValueError) as e:
                raise CheckpointMismatch(f"{manifest_path} is unreadable ({e}); delete the folder "
                                         "or use another checkpoint location") from None
            if found != self.manifest:
                flat = lambda d: {**{f"config.{k}": v for k, v in d.get("config", {}).items()},
                                  **{f"versions.{k}": v for k, v in d.get("versions", {}).items()},
                                  "experiment": d.get("experiment"), "format": d.get("format")}
                raise _mismatch(self.path, flat(found), flat(self.manifest))
        else:
            atomic_write_text(manifest_path, json.dumps(self.manifest, indent=2) + "\n")
        for stale in self.path.glob(".*.tmp"):  # a save cut short by SIGKILL (the old file is intact)
            stale.unlink(missing_ok=True)

    @property
    def resumed(self) -> bool:
        """Whether any stage has saved state (this run continues an earlier one)."""
        return any(self.path.glob("*.ckpt"))

    def stage(self, name: str) -> Path:
        """The checkpoint file of stage ``name``."""
        return self.path / f"{name}.ckpt"

    def memo(self, name: str, compute: Callable[[], Any]) -> Any:
        """``compute()``, saved as stage ``name``; a rerun loads it instead of computing.

        For stages that run as one piece (no chunks to resume inside)."""
        path = self.stage(name)
        fingerprint = {"stage": name}
        saved = load_checkpoint(path, fingerprint)
        if saved is not None:
            return saved
        value = _to_numpy(compute())  # the same type whether computed or loaded
        save_checkpoint(path, fingerprint, value)
        return value

    def remove(self) -> None:
        """Delete the folder (after the results are written)."""
        shutil.rmtree(self.path, ignore_errors=True)
