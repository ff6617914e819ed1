"""Writing results: run metadata (configuration, versions) and atomic file output.

Every JSON or PNG the toolkit writes goes through :func:`atomic_write_bytes`: the data
go to a temporary file in the same folder, are fsynced, then renamed over the target,
so a reader never sees a half-written file and an interrupted run leaves the previous
result intact.
"""

from __future__ import annotations

import datetime
import io
import json
import math
import os
import platform
import threading
from pathlib import Path
from typing import Any

__all__ = [
    "atomic_write_bytes",
    "atomic_write_text",
    "json_safe",
    "run_metadata",
    "save_figure",
    "write_json",
]


def run_metadata() -> dict[str, Any]:
    """Library versions, backend, devices, precision and the time of the run."""
    import jax
    import jaxlib
    import matplotlib
    import numpy
    import optax

    from overparam_jax import __version__

    return {
        "overparam_jax": __version__,
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "optax": optax.__version__,
        "numpy": numpy.__version__,
        "matplotlib": matplotlib.__version__,
        "python": platform.python_version(),
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "x64": bool(jax.config.jax_enable_x64),
        "utc_time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file, fsync, rename), with the usual file
    mode (0o666 less the umask). The temporary's name is fixed before it is created, so an
    interrupt (Ctrl-C, SIGTERM) at any point removes it; only SIGKILL can leave one behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def json_safe(value: Any) -> Any:
    """``value`` with NumPy scalars/arrays made plain and non-finite floats as strings ("inf", "nan")."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "tolist"):  # NumPy / JAX arrays and scalars
        return json_safe(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value


def write_json(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Write ``payload`` plus ``{"metadata": run_metadata()}`` as indented JSON, atomically.

    Non-finite floats are written as the strings ``"inf"``, ``"-inf"``, ``"nan"``.
    """
    document = json_safe({**payload, "metadata": run_metadata()})
    return atomic_write_text(path, json.dumps(document, indent=2, allow_nan=False) + "\n")


def save_figure(fig: Any, path: str | os.PathLike, *, caption: str = "") -> Path:
    """Save a matplotlib figure as PNG atomically, with ``caption`` and versions in its metadata."""
    buffer = io.BytesIO()
    meta = run_metadata()
    info = {"Description": caption, "Software": f"overparam_jax {meta['overparam_jax']} jax {meta['jax']}"}
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight", metadata=info)
    return atomic_write_bytes(path, buffer.getvalue())
