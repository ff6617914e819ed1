"""Checkpoints: long runs save their state after every chunk and resume where they stopped.

A checkpoint file holds a *fingerprint* of what produced it (JSON) and a *payload*: the
state to resume from, a **plain** tree of dicts (``str`` keys), lists, tuples, ``None``,
``bool``, ``int``, ``float``, ``complex``, ``str``, NumPy scalars and NumPy or JAX arrays of
bool or numeric dtype (including ml_dtypes' ``bfloat16`` and friends). JAX arrays come back
as NumPy arrays; everything else comes back as the type it was saved as, bit for bit
(dtype, byte order, shape and bytes; ``-0.0`` and NaN payloads included). Structured
pytrees (NamedTuples, optax states) are saved as their leaves, :func:`tree_to_leaves`, and
put back into the structure of a template, :func:`leaves_into`;
:func:`save_checkpoint` refuses anything else with a ``TypeError`` naming where in the
payload it is.

Loading compares fingerprints first: a checkpoint of a different configuration or library
version raises :class:`CheckpointMismatch` naming what differs, and is never silently
mixed in. Files are written atomically (temporary file, fsync, rename,
:func:`~overparam_jax.results.atomic_write_bytes`), so a run killed while saving leaves
the previous checkpoint intact.

The file format (``_FORMAT = 2``) is a NumPy ``.npz`` zip archive, uncompressed:

* member ``checkpoint.npy``: a 0-d unicode array holding one ASCII JSON document
  ``{"format": 2, "fingerprint": {...}, "payload": NODE}``;
* members ``a0.npy``, ``a1.npy``, ...: one per array or NumPy scalar of the payload, in
  the order they occur (ml_dtypes arrays are stored as the unsigned integers of their
  bits, their dtype named in the document).

A payload ``NODE`` is ``null``, ``true``/``false``, a JSON integer, a finite float (JSON
number; Python's shortest repr round-trips it exactly), a string, a JSON list (a Python
list), or an object with exactly one tag: ``{"tuple": [NODE, ...]}``,
``{"dict": {"key": NODE, ...}}`` (insertion order kept), ``{"float": "7ff8000000000000"}``
(a non-finite float, by its IEEE-754 bits), ``{"complex": [NODE, NODE]}``,
``{"array": "a0"}`` or ``{"scalar": "a1"}`` (with ``"ml_dtype": "bfloat16"`` for an
ml_dtypes type).

Loading never unpickles: the archive is read with ``np.load(..., allow_pickle=False)``, so
a pickle file, an object array or anything else that is not such an archive raises
:class:`CheckpointMismatch` with a one-line reason instead of running code. Checkpoints of
format 1 (pickles, written by older versions) are recognised by their first bytes and
reported as such, without being unpickled.

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
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import platform
import shutil
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import ml_dtypes
import numpy as np

from overparam_jax.results import atomic_write_bytes, atomic_write_text, json_safe

__all__ = [
    "CheckpointDir",
    "CheckpointMismatch",
    "array_digest",
    "leaves_into",
    "load_checkpoint",
    "save_checkpoint",
    "software_versions",
    "tree_to_leaves",
]

_FORMAT = 2
_DOCUMENT = "checkpoint"  # the archive member holding the JSON document
_HOLDS = "checkpoints hold arrays, numbers, strings, None, lists, tuples and dicts"
_PYTREE_HINT = ("; save a structured pytree as tree_to_leaves(tree) and restore it with "
                "leaves_into(template, leaves)")
_NUMERIC_KINDS = frozenset("biufc")  # bool, signed, unsigned, float, complex
# ml_dtypes' extension types (bfloat16, float8_*, int4, ...) by name: np.save would write
# them as raw void ("V2"), so they travel as unsigned integers plus their name.
_ML_DTYPES = {np.dtype(t).name: np.dtype(t) for t in vars(ml_dtypes).values()
              if isinstance(t, type) and issubclass(t, np.generic)}
_UINT_OF_SIZE = {1: np.dtype(np.uint8), 2: np.dtype(np.uint16), 4: np.dtype(np.uint32),
                 8: np.dtype(np.uint64)}
_PICKLE_PROTOCOLS = frozenset({2, 3, 4, 5})  # protocols >= 2 start with b"\x80" + version
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header; an empty archive


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


def _old_format(path: Path) -> CheckpointMismatch:
    return CheckpointMismatch(f"checkpoint {path} was written by an older version of overparam_jax "
                              "(pickle format, no longer loaded): delete it")


def _not_a_checkpoint(path: Path, reason: str) -> CheckpointMismatch:
    reason = " ".join(reason.split())  # one line
    reason = reason if len(reason) < 240 else reason[:240] + "…"
    return CheckpointMismatch(f"checkpoint {path} is not an overparam_jax checkpoint of format "
                              f"{_FORMAT} ({reason}); delete it or use another checkpoint location")


class _Damaged(Exception):
    """The archive opened but its contents are not what :func:`save_checkpoint` writes."""


# ----------------------------------------------------------------------------- encoding


def _ml_dtype(dtype: np.dtype) -> str | None:
    """The name of ``dtype`` if it is one of ml_dtypes' types (some claim kind "f" or "c")."""
    ml = _ML_DTYPES.get(dtype.name)
    return dtype.name if ml is not None and ml == dtype else None  # (np.dtype(None) is float64)


def _array_dtype_check(a: np.ndarray, where: str) -> None:
    if a.dtype.kind not in _NUMERIC_KINDS and _ml_dtype(a.dtype) is None:
        raise TypeError(f"{where} is an array of dtype {a.dtype}; checkpoints hold arrays of "
                        "bool and numeric dtypes")


def _a(kind: type) -> str:
    """``kind``'s name with its article: "an int", "a numpy.ma.MaskedArray"."""
    name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    return f"{'an' if name[0] in 'aeiouAEIOU' else 'a'} {name}"


def _is_pytree_node(value: Any) -> bool:
    return not jax.tree_util.treedef_is_leaf(jax.tree_util.tree_structure(value))


class _Encoder:
    """Turns a plain payload into a JSON node and the arrays it refers to."""

    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}
        self._open: set[int] = set()  # ids of the containers on the current path (cycles)

    def _store(self, tag: str, a: np.ndarray) -> dict[str, str]:
        key = f"a{len(self.arrays)}"
        node = {tag: key}
        if _ml_dtype(a.dtype) is not None:
            node["ml_dtype"] = a.dtype.name
            a = a.view(_UINT_OF_SIZE[a.dtype.itemsize])
        self.arrays[key] = a
        return node

    def __call__(self, value: Any, where: str) -> Any:
        kind = type(value)
        if value is None or kind in (bool, int, str):
            return value
        if kind is float:
            if math.isfinite(value):
                return value
            return {"float": struct.pack(">d", value).hex()}
        if kind is complex:
            return {"complex": [self(value.real, f"{where}.real"), self(value.imag, f"{where}.imag")]}
        if kind is np.ndarray:
            _array_dtype_check(value, where)
            return self._store("array", value)
        if isinstance(value, np.generic):  # NumPy (and ml_dtypes) scalars, np.float64 included
            a = np.asarray(value)
            _array_dtype_check(a, where)
            return self._store("scalar", a)
        if isinstance(value, jax.Array):
            if jax.dtypes.issubdtype(value.dtype, jax.dtypes.prng_key):
                raise TypeError(f"{where} is a JAX array of random keys ({value.dtype}); save "
                                "jax.random.key_data(keys) and rewrap with jax.random.wrap_key_data")
            a = np.asarray(value)
            _array_dtype_check(a, where)
            return self._store("array", a)
        if kind in (list, tuple, dict):
            if id(value) in self._open:
                raise TypeError(f"{where} contains itself; {_HOLDS} (without cycles)")
            self._open.add(id(value))
            try:
                if kind is dict:
                    for k in value:
                        if type(k) is not str:
                            raise TypeError(f"{where} has the key {k!r} ({_a(type(k))}); "
                                            "checkpoint dicts have str keys")
                    return {"dict": {k: self(v, f"{where}[{k!r}]") for k, v in value.items()}}
                items = [self(v, f"{where}[{i}]") for i, v in enumerate(value)]
                return items if kind is list else {"tuple": items}
            finally:
                self._open.discard(id(value))
        named = isinstance(value, tuple) and hasattr(value, "_fields")
        hint = _PYTREE_HINT if named or _is_pytree_node(value) else ""
        raise TypeError(f"{where} is {_a(kind)}{' (a NamedTuple)' if named else ''}; {_HOLDS}{hint}")


def _encode(payload: Any) -> tuple[Any, dict[str, np.ndarray]]:
    encoder = _Encoder()
    node = encoder(payload, "payload")
    return node, encoder.arrays


# ----------------------------------------------------------------------------- decoding


def _decode(node: Any, arrays: Callable[[str], np.ndarray], seen: set[str]) -> Any:
    """The payload of ``node``; ``arrays(key)`` reads an archive member. Raises _Damaged."""
    if node is None or type(node) in (bool, int, str, float):
        if type(node) is float and not math.isfinite(node):
            raise _Damaged("a bare non-finite float in the document")
        return node
    if type(node) is list:
        return [_decode(v, arrays, seen) for v in node]
    if type(node) is not dict or not node:
        raise _Damaged(f"an unexpected {type(node).__name__} in the document")
    tag = next(iter(node))
    body = node[tag]
    if tag in ("array", "scalar"):
        extra = set(node) - {tag, "ml_dtype"}
        if extra or type(body) is not str or body in seen:
            raise _Damaged(f"a malformed or repeated array reference {node!r}")
        seen.add(body)
        a = arrays(body)
        if type(a) is not np.ndarray or a.dtype.kind not in _NUMERIC_KINDS or _ml_dtype(a.dtype):
            raise _Damaged(f"member {body!r} is not an array of bool or numeric dtype")
        if "ml_dtype" in node:
            ml = _ML_DTYPES.get(node["ml_dtype"]) if type(node["ml_dtype"]) is str else None
            if ml is None or a.dtype != _UINT_OF_SIZE.get(ml.itemsize):
                raise _Damaged(f"member {body!r} cannot hold ml_dtype {node['ml_dtype']!r}")
            a = a.view(ml)
        if tag == "scalar":
            if a.ndim:
                raise _Damaged(f"member {body!r} holds a scalar of shape {a.shape}")
            return a[()]
        return a
    if len(node) != 1:
        raise _Damaged(f"an object with keys {sorted(node)} in the document")
    if tag == "tuple" and type(body) is list:
        return tuple(_decode(v, arrays, seen) for v in body)
    if tag == "dict" and type(body) is dict:
        return {k: _decode(v, arrays, seen) for k, v in body.items()}
    if tag == "float" and type(body) is str and len(body) == 16:
        try:
            value = struct.unpack(">d", bytes.fromhex(body))[0]
        except ValueError:
            raise _Damaged(f"a malformed float {body!r}") from None
        if math.isfinite(value):
            raise _Damaged("a finite float stored by its bits")
        return value
    if tag == "complex" and type(body) is list and len(body) == 2:
        real, imag = (_decode(v, arrays, seen) for v in body)
        if type(real) is not float or type(imag) is not float:
            raise _Damaged("a complex number with non-float parts")
        return complex(real, imag)
    raise _Damaged(f"an unknown node {tag!r} in the document")


def _no_constants(name: str) -> None:
    raise _Damaged(f"{name} in the document")


def _canonical(fingerprint: dict[str, Any]) -> Any:
    """``fingerprint`` as it reads back from the file (tuples as lists, inf as "inf")."""
    try:
        return json.loads(json.dumps(json_safe(fingerprint), allow_nan=False))
    except (TypeError, ValueError) as e:
        raise TypeError(f"the fingerprint must be JSON-serializable ({e})") from None


# ----------------------------------------------------------------------------- public API


def save_checkpoint(path: str | os.PathLike, fingerprint: dict[str, Any], payload: Any) -> Path:
    """Write ``payload`` with ``fingerprint`` to ``path`` atomically.

    Args:
        path: the checkpoint file (its folder is created if needed).
        fingerprint: JSON-serializable description of what produced the payload; NumPy
            values, tuples and non-finite floats are stored as by
            :func:`~overparam_jax.results.json_safe`.
        payload: a plain tree: dicts with ``str`` keys, lists, tuples, ``None``, bools,
            ints, floats, complex numbers, strings, NumPy scalars, NumPy or JAX arrays
            of bool or numeric dtype (JAX arrays are stored as NumPy arrays).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        TypeError: the payload holds anything else (the message names where, e.g.
            ``payload['carry'][3]``), including NamedTuples and other pytree nodes
            (save :func:`tree_to_leaves` of those), or the fingerprint is not JSON.
            Nothing is written then.

    Examples:
        >>> import tempfile, numpy as np
        >>> path = Path(tempfile.mkdtemp()) / "run.ckpt"
        >>> _ = save_checkpoint(path, {"seed": 0}, {"step": 3, "w": np.zeros(2, np.float32)})
        >>> load_checkpoint(path, {"seed": 0})
        {'step': 3, 'w': array([0., 0.], dtype=float32)}
    """
    fingerprint = _canonical(fingerprint)
    node, arrays = _encode(payload)
    document = json.dumps({"format": _FORMAT, "fingerprint": fingerprint, "payload": node},
                          allow_nan=False, ensure_ascii=True, separators=(",", ":"))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, a in {_DOCUMENT: np.array(document), **arrays}.items():  # as np.savez does
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, a, allow_pickle=False)
    return atomic_write_bytes(path, buffer.getvalue())


def _damaged(path: Path, error: Exception) -> CheckpointMismatch:
    reason = str(error) if isinstance(error, _Damaged) else f"{type(error).__name__}: {error}"
    return _not_a_checkpoint(path, reason)


def _read_document(npz: Any) -> dict[str, Any]:
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise _Damaged("not an .npz archive")
    if _DOCUMENT not in npz.files:
        raise _Damaged(f"no {_DOCUMENT!r} member")
    text = npz[_DOCUMENT]
    if type(text) is not np.ndarray or text.dtype.kind != "U" or text.ndim != 0:
        raise _Damaged(f"the {_DOCUMENT!r} member is not a 0-d unicode array")
    document = json.loads(text.item(), parse_constant=_no_constants)
    if type(document) is not dict or set(document) != {"format", "fingerprint", "payload"}:
        raise _Damaged("the document is not {format, fingerprint, payload}")
    return document


def _read_payload(npz: Any, node: Any) -> Any:
    arrays = set(npz.files) - {_DOCUMENT}
    seen: set[str] = set()

    def member(key: str) -> np.ndarray:
        if key not in arrays:
            raise _Damaged(f"no array member {key!r}")
        return npz[key]

    value = _decode(node, member, seen)
    if seen != arrays:
        raise _Damaged(f"unreferenced members {sorted(arrays - seen)}")
    return value


def load_checkpoint(path: str | os.PathLike, fingerprint: dict[str, Any]) -> Any | None:
    """The payload saved at ``path``, or ``None`` if there is no file.

    Nothing is unpickled: the file is read with ``np.load(..., allow_pickle=False)``.

    Raises:
        CheckpointMismatch: the file was written with another fingerprint (the message
            names what differs), by an older version (pickle format), or is not a
            checkpoint of this format (truncated, corrupt, an object array, any other file).
        TypeError: ``fingerprint`` is not JSON-serializable.
    """
    path = Path(path)
    expected = _canonical(fingerprint)
    if not path.exists():
        return None
    try:
        with open(path, "rb") as f:
            return _load_open(path, f, expected)
    except OSError as e:
        raise CheckpointMismatch(f"checkpoint {path} is unreadable ({type(e).__name__}: {e}); "
                                 "delete it or use another checkpoint location") from None


def _load_open(path: Path, f: Any, expected: Any) -> Any:
    magic = f.read(4)
    if len(magic) >= 2 and magic[0] == 0x80 and magic[1] in _PICKLE_PROTOCOLS:
        raise _old_format(path)  # recognised by its first bytes, never unpickled
    if not magic.startswith(_ZIP_MAGIC):
        raise _not_a_checkpoint(path, "not a zip archive")
    f.seek(0)
    try:
        npz = np.load(f, allow_pickle=False)
        document = _read_document(npz)
    except Exception as e:  # noqa: BLE001 - any unreadable archive is reported the same way
        raise _damaged(path, e) from None
    with npz:
        if document["format"] != _FORMAT:
            raise _mismatch(path, {"format": document["format"]}, {"format": _FORMAT})
        found = document["fingerprint"]
        if found != expected:
            as_dict = lambda d: d if type(d) is dict else {"fingerprint": d}
            raise _mismatch(path, as_dict(found), as_dict(expected))
        try:
            return _read_payload(npz, document["payload"])
        except Exception as e:  # noqa: BLE001 - object arrays, CRC errors, truncated members
            raise _damaged(path, e) from None


def tree_to_leaves(tree: Any) -> list[np.ndarray]:
    """The leaves of a pytree (NamedTuples, optax states, ...) as NumPy arrays, a plain
    payload for :func:`save_checkpoint`; :func:`leaves_into` puts them back.

    Raises:
        TypeError: a leaf is not a bool or numeric array or scalar.

    Examples:
        >>> import optax, jax.numpy as jnp
        >>> state = optax.adam(1e-3).init((jnp.zeros(2),))
        >>> leaves = tree_to_leaves(state)
        >>> restored = leaves_into(state, leaves)
        >>> jax.tree_util.tree_structure(restored) == jax.tree_util.tree_structure(state)
        True
    """
    leaves = []
    for i, leaf in enumerate(jax.tree_util.tree_leaves(tree)):
        a = np.asarray(leaf)
        _array_dtype_check(a, f"leaf {i} of the tree")
        leaves.append(a)
    return leaves


def _shape_dtype(x: Any) -> tuple[tuple[int, ...], np.dtype]:
    if hasattr(x, "shape") and hasattr(x, "dtype"):  # arrays, ShapeDtypeStruct: no transfer
        return tuple(x.shape), np.dtype(x.dtype)
    a = np.asarray(x)
    return a.shape, a.dtype


def leaves_into(template: Any, leaves: Any) -> Any:
    """``template``'s structure with ``leaves`` (as saved by :func:`tree_to_leaves`) in
    place of its leaves. The leaves stay NumPy arrays; place them on devices with e.g.
    ``jax.device_put(tree, jax.tree_util.tree_map(lambda x: x.sharding, template))``.

    Args:
        template: a pytree of the expected structure (arrays or ``jax.ShapeDtypeStruct``).
        leaves: a list (or tuple) of arrays, one per leaf of ``template``, in tree order.

    Raises:
        CheckpointMismatch: ``leaves`` is not a list, or the number of leaves, a shape or a
            dtype differs from the template's.
    """
    like, treedef = jax.tree_util.tree_flatten(template)
    if type(leaves) not in (list, tuple):
        raise CheckpointMismatch(f"the checkpoint holds a {type(leaves).__name__} where a list of "
                                 f"{len(like)} leaves was expected")
    if len(leaves) != len(like):
        raise CheckpointMismatch(f"the checkpoint holds {len(leaves)} leaves; the template has "
                                 f"{len(like)} (it was written for another structure)")
    restored = []
    for i, (leaf, expected) in enumerate(zip(leaves, like)):
        if type(leaf) is not np.ndarray:
            raise CheckpointMismatch(f"leaf {i} of the checkpoint is a {type(leaf).__name__}, "
                                     "not an array")
        shape, dtype = _shape_dtype(expected)
        if leaf.shape != shape or leaf.dtype != dtype:
            raise CheckpointMismatch(
                f"leaf {i} of the checkpoint has shape {leaf.shape} and dtype {leaf.dtype}; "
                f"the template's has shape {shape} and dtype {dtype}")
        restored.append(leaf)
    return jax.tree_util.tree_unflatten(treedef, restored)


class CheckpointDir:
    """The checkpoint folder of one experiment run.

    ``manifest.json`` records the experiment, its configuration and the software versions;
    opening a folder whose manifest differs raises :class:`CheckpointMismatch`. Each stage
    of the experiment keeps its state in ``<name>.ckpt`` (:meth:`stage`), a file of
    :func:`save_checkpoint`'s format.

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
            if type(found) is not dict:
                raise CheckpointMismatch(f"{manifest_path} is not a checkpoint manifest; delete the "
                                         "folder or use another checkpoint location")
            if found.get("format") == 1:
                raise CheckpointMismatch(f"checkpoint folder {self.path} was written by an older "
                                         "version of overparam_jax (pickle format, no longer "
                                         "loaded): delete it")
            if found != self.manifest:
                part = lambda d, k: d.get(k) if type(d.get(k)) is dict else {}
                flat = lambda d: {**{f"config.{k}": v for k, v in part(d, "config").items()},
                                  **{f"versions.{k}": v for k, v in part(d, "versions").items()},
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

        For stages that run as one piece (no chunks to resume inside). ``compute`` must
        return a plain payload (see :func:`save_checkpoint`; a NamedTuple is refused with
        a ``TypeError``); the value is returned as loading it would return it (JAX arrays
        as NumPy arrays), so computed and resumed runs see the same types."""
        path = self.stage(name)
        fingerprint = {"stage": name}
        saved = load_checkpoint(path, fingerprint)
        if saved is not None:
            return saved
        node, arrays = _encode(compute())
        value = _decode(node, arrays.__getitem__, set())  # the same type whether computed or loaded
        save_checkpoint(path, fingerprint, value)
        return value

    def remove(self) -> None:
        """Delete the folder (after the results are written)."""
        shutil.rmtree(self.path, ignore_errors=True)
