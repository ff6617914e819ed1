"""Checkpoint files: plain payloads round-trip bit for bit, anything else is refused when
saving, and loading never unpickles (a planted pickle is reported, not run)."""

import enum
import json
import pickle
import re
import struct
import zipfile
from collections import OrderedDict
from typing import NamedTuple

import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import optax
import pytest
from hypothesis import given

from overparam_jax.checkpoint import (
    CheckpointDir,
    CheckpointMismatch,
    leaves_into,
    load_checkpoint,
    save_checkpoint,
    tree_to_leaves,
)

FP = {"run": "test", "seed": 0}
NOT_THIS_FORMAT = "is not an overparam_jax checkpoint of format 2"
OLD_FORMAT = r"older version of overparam_jax \(pickle format, no longer loaded\): delete it"


def assert_identical(found, expected, where="payload"):
    """Same types all the way down (tuples stay tuples, ints stay ints), arrays with the
    same dtype (byte order included), shape and bytes, floats with the same bits."""
    assert type(found) is type(expected), f"{where}: {type(found)} != {type(expected)}"
    if isinstance(expected, dict):
        assert list(found) == list(expected), f"{where}: keys {list(found)} != {list(expected)}"
        for k in expected:
            assert_identical(found[k], expected[k], f"{where}[{k!r}]")
    elif isinstance(expected, (list, tuple)):
        assert len(found) == len(expected), where
        for i, (f, e) in enumerate(zip(found, expected)):
            assert_identical(f, e, f"{where}[{i}]")
    elif isinstance(expected, (np.ndarray, np.generic)):
        assert found.dtype == expected.dtype and found.dtype.str == expected.dtype.str, where
        assert found.shape == expected.shape, where
        assert np.asarray(found).tobytes() == np.asarray(expected).tobytes(), where
    elif isinstance(expected, float):
        assert struct.pack("<d", found) == struct.pack("<d", expected), f"{where}: {found!r} != {expected!r}"
    elif isinstance(expected, complex):
        assert_identical(found.real, expected.real, f"{where}.real")
        assert_identical(found.imag, expected.imag, f"{where}.imag")
    else:
        assert found == expected, where


def round_trip(tmp_path, payload, name="x.ckpt"):
    path = save_checkpoint(tmp_path / name, FP, payload)
    return load_checkpoint(path, FP)


def test_the_assertion_helper_tells_apart_what_a_lossy_format_would_merge():
    for a, b in [((1, 2), [1, 2]), (1, 1.0), (True, 1), (0.0, -0.0), (np.float64(1), 1.0),
                 (np.zeros(2, np.float32), np.zeros(2, np.float64)),
                 (np.zeros(2, ">f8"), np.zeros(2, "<f8")), (np.zeros((2, 1)), np.zeros((1, 2))),
                 (np.zeros((), np.int64), np.int64(0)), ({"a": 1, "b": 2}, {"b": 2, "a": 1}),
                 (float("nan"), -float("nan"))]:
        with pytest.raises(AssertionError):
            assert_identical(a, b)


# ------------------------------------------------------------------------ round trips

NUMPY_DTYPES = [np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32,
                np.uint64, np.float16, np.float32, np.float64, np.complex64, np.complex128, ">f8", ">i4"]
ML_DTYPES = [ml_dtypes.bfloat16, ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e5m2, ml_dtypes.int4]

finite_or_not = st.floats(allow_nan=True, allow_infinity=True)
leaves = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70), finite_or_not,
    st.complex_numbers(allow_nan=True, allow_infinity=True), st.text(max_size=8),
    hnp.arrays(st.sampled_from(NUMPY_DTYPES), hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3)),
    hnp.from_dtype(np.dtype(np.float32)).map(np.float32), st.integers(-5, 5).map(np.int16),
    st.booleans().map(np.bool_),
)
payloads = st.recursive(
    leaves,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.lists(inner, max_size=4).map(tuple),
                            st.dictionaries(st.text(max_size=5), inner, max_size=4)),
    max_leaves=12,
)


@given(payloads)
def test_plain_payloads_round_trip_bit_for_bit(tmp_path_factory, payload):
    assert_identical(round_trip(tmp_path_factory.mktemp("rt"), payload), payload)


EDGE_CASES = {
    "floats": [0.0, -0.0, float("inf"), -float("inf"), float("nan"), -float("nan"), 5e-324,
               struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000123))[0], 1.0, 1e300],
    "ints": (0, -1, 2**64, -(2**100), True, False),
    "empty": {"list": [], "tuple": (), "dict": {}, "str": "", "array": np.zeros((0, 3), np.float32)},
    "text": ["\x00", "é", "\udcff", '{"dict": 1}', "a\nb"],
    "lookalikes": [{"tuple": [1]}, {"array": "a0"}, {"float": "7ff8000000000000"}, ["dict", {}]],
    "arrays": [np.asfortranarray(np.arange(6.0).reshape(2, 3)), np.arange(10)[::3],
               np.array(np.nan, ">f4"), np.array([True, False]), np.arange(4, dtype=np.complex64)],
    "scalars": (np.float64(-0.0), np.int8(-3), np.uint64(2**64 - 1), np.bool_(True), np.complex128(1j)),
    "ml_dtypes": [np.arange(-3, 4).astype(t) for t in ML_DTYPES] + [ml_dtypes.bfloat16(-0.0)],
    "complex": complex(float("nan"), -0.0),
    "nested": [[[(None,)]], {"a": {"b": {"c": ()}}}],
}


@pytest.mark.parametrize("name", sorted(EDGE_CASES))
def test_edge_cases_round_trip_bit_for_bit(tmp_path, name):
    assert_identical(round_trip(tmp_path, EDGE_CASES[name]), EDGE_CASES[name])


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64, jnp.int32, jnp.bool_, jnp.complex64,
                                   jnp.bfloat16, jnp.float16, jnp.uint8])
def test_jax_arrays_come_back_as_numpy_arrays_with_the_same_bits(tmp_path, dtype):
    x = jax.random.normal(jax.random.key(0), (3, 2)).astype(dtype)
    loaded = round_trip(tmp_path, {"x": x, "scalar": jnp.asarray(3, dtype)})
    assert_identical(loaded, {"x": np.asarray(x), "scalar": np.asarray(jnp.asarray(3, dtype))})


def test_the_file_is_an_npz_archive_with_a_json_document(tmp_path):
    path = save_checkpoint(tmp_path / "x.ckpt", FP, {"w": np.ones(2), "t": (1, 2.5), "b": jnp.ones(1, jnp.bfloat16)})
    with np.load(path, allow_pickle=False) as npz:
        assert sorted(npz.files) == ["a0", "a1", "checkpoint"]
        document = json.loads(str(npz["checkpoint"]))
        assert npz["a1"].dtype == np.uint16  # bfloat16 travels as its bits
    assert document == {"format": 2, "fingerprint": FP, "payload": {"dict": {
        "w": {"array": "a0"}, "t": {"tuple": [1, 2.5]}, "b": {"array": "a1", "ml_dtype": "bfloat16"}}}}


# ------------------------------------------------------------------------ refusals

class Pair(NamedTuple):
    a: np.ndarray
    b: np.ndarray


class Colour(enum.IntEnum):
    RED = 1


class Foo:
    pass


def _self_containing():
    x = [1]
    x.append(x)
    return {"loop": x}


REFUSED = [
    ({"carry": [0, 1, 2, Foo()]}, (r"^payload\['carry'\]\[3\] is a tests\.test_checkpoint\.Foo; checkpoints hold "
                                   r"arrays, numbers, strings, None, lists, tuples and dicts$")),
    (Pair(np.zeros(1), np.ones(1)), r"^payload is a tests\.test_checkpoint\.Pair \(a NamedTuple\); .*tree_to_leaves"),
    ({"state": [Pair(np.zeros(1), np.ones(1))]}, r"^payload\['state'\]\[0\] is a .*Pair \(a NamedTuple\)"),
    ({"opt": optax.sgd(0.1).init(jnp.zeros(2))}, r"^payload\['opt'\]\[0\] is an optax\..*EmptyState \(a NamedTuple\);.*tree_to_leaves"),
    ({"s": {1, 2}}, r"^payload\['s'\] is a set;"),
    ({"b": b"bytes"}, r"^payload\['b'\] is a bytes;"),
    ({1: "x"}, r"^payload has the key 1 \(an int\); checkpoint dicts have str keys"),
    (OrderedDict(a=1), r"^payload is a collections\.OrderedDict;"),
    ([Colour.RED], r"^payload\[0\] is a tests\.test_checkpoint\.Colour;"),
    ({"o": np.array([None, 1], dtype=object)}, (r"^payload\['o'\] is an array of dtype object; "
                                                "checkpoints hold arrays of bool and numeric dtypes")),
    ({"u": np.array(["a"])}, r"^payload\['u'\] is an array of dtype <U1;"),
    ({"d": np.array(["2020-01-01"], "datetime64[D]")}, r"^payload\['d'\] is an array of dtype datetime64"),
    ({"r": np.zeros(1, [("x", "f8")])}, r"^payload\['r'\] is an array of dtype"),
    ({"m": np.ma.masked_array([1.0])}, r"^payload\['m'\] is a numpy\.ma\.MaskedArray;"),
    ({"s": np.str_("a")}, r"^payload\['s'\] is an array of dtype <U1;"),
    ({"k": jax.random.key(0)}, r"^payload\['k'\] is a JAX array of random keys .*key_data"),
    (_self_containing(), r"^payload\['loop'\]\[1\] contains itself"),
]


@pytest.mark.parametrize("payload, message", REFUSED, ids=[m[:40] for _, m in REFUSED])
def test_save_refuses_what_is_not_a_plain_payload_and_writes_nothing(tmp_path, payload, message):
    path = save_checkpoint(tmp_path / "x.ckpt", FP, {"previous": 1})
    with pytest.raises(TypeError, match=message):
        save_checkpoint(path, FP, payload)
    assert load_checkpoint(path, FP) == {"previous": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.ckpt"]


def test_a_non_json_fingerprint_is_refused(tmp_path):
    with pytest.raises(TypeError, match="fingerprint must be JSON-serializable"):
        save_checkpoint(tmp_path / "x.ckpt", {"f": Foo()}, 1)
    with pytest.raises(TypeError, match="fingerprint must be JSON-serializable"):
        load_checkpoint(tmp_path / "x.ckpt", {"f": Foo()})


# ------------------------------------------------------------------------ fingerprints

def test_no_file_loads_as_none(tmp_path):
    assert load_checkpoint(tmp_path / "absent.ckpt", FP) is None


def test_fingerprints_match_as_read_back_from_json(tmp_path):
    fingerprint = {"dims": (3, 2), "eta": np.float64(0.5), "limit": float("inf"), "nested": {"x": [np.int32(1)]}}
    path = save_checkpoint(tmp_path / "x.ckpt", fingerprint, None)
    assert load_checkpoint(path, {"dims": [3, 2], "eta": 0.5, "limit": "inf", "nested": {"x": [1]}}) is None


def test_a_different_fingerprint_is_named(tmp_path):
    path = save_checkpoint(tmp_path / "x.ckpt", {"seed": 0, "eta": 0.1, "kind": "gd"}, [1])
    with pytest.raises(CheckpointMismatch, match=r"different configuration or version \(seed: 0 in the "
                       r"checkpoint, 1 now\); delete it or use another checkpoint location") as info:
        load_checkpoint(path, {"seed": 1, "eta": 0.1, "kind": "gd"})
    assert "eta" not in str(info.value)
    with pytest.raises(CheckpointMismatch, match=r"extra: '\(absent\)' in the checkpoint, 1 now"):
        load_checkpoint(path, {"seed": 0, "eta": 0.1, "kind": "gd", "extra": 1})


def test_another_format_is_named(tmp_path):
    path = tmp_path / "x.ckpt"
    _write_archive(path, {"format": 3, "fingerprint": FP, "payload": None})
    with pytest.raises(CheckpointMismatch, match=r"format: 3 in the checkpoint, 2 now"):
        load_checkpoint(path, FP)


# ------------------------------------------------------------------------ nothing is unpickled

class _Touch:
    """Unpickling this creates ``marker``: the visible side effect of running planted code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _malicious_pickle(marker, protocol=pickle.HIGHEST_PROTOCOL):
    blob = pickle.dumps({"format": 2, "fingerprint": FP, "payload": _Touch(marker)}, protocol=protocol)
    pickle.loads(blob).get("payload").close()  # the blob does run code when unpickled ...
    assert marker.exists()
    marker.unlink()  # ... and the marker is gone again before the real test
    return blob


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_a_planted_pickle_is_refused_without_running_it(tmp_path, protocol):
    marker = tmp_path / "pwned"
    path = tmp_path / "x.ckpt"
    path.write_bytes(_malicious_pickle(marker, protocol))
    expected = OLD_FORMAT if protocol >= 2 else NOT_THIS_FORMAT + r" \(not a zip archive\)"
    with pytest.raises(CheckpointMismatch, match=expected):
        load_checkpoint(path, FP)
    assert not marker.exists()


def test_an_object_array_in_the_archive_is_refused_without_unpickling_it(tmp_path):
    marker = tmp_path / "pwned"
    _malicious_pickle(marker)
    evil = np.empty(1, dtype=object)
    evil[0] = _Touch(marker)
    path = tmp_path / "x.ckpt"
    np.savez(path.with_suffix(".npz"), checkpoint=np.array(json.dumps(
        {"format": 2, "fingerprint": FP, "payload": {"array": "a0"}})), a0=evil)  # np.savez pickles it
    path.with_suffix(".npz").rename(path)
    with pytest.raises(CheckpointMismatch, match=NOT_THIS_FORMAT + r" \(ValueError: Object arrays cannot "
                       "be loaded when allow_pickle=False\\)"):
        load_checkpoint(path, FP)
    assert not marker.exists()
    np.load(path, allow_pickle=True)["a0"][0].close()  # what a pickle-allowing loader would have run
    assert marker.exists()


def test_a_planted_stage_file_is_refused_by_memo_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    folder = CheckpointDir(tmp_path / "run", experiment="e", config={"n": 1})
    folder.stage("pilot").write_bytes(_malicious_pickle(marker))
    with pytest.raises(CheckpointMismatch, match=OLD_FORMAT):
        folder.memo("pilot", lambda: pytest.fail("must not compute over a planted file"))
    assert not marker.exists()


def test_loading_a_valid_checkpoint_calls_no_unpickler(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "x.ckpt", FP, EDGE_CASES)

    def forbidden(*args, **kwargs):
        raise AssertionError("pickle used on the load path")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, forbidden)
    assert_identical(load_checkpoint(path, FP), EDGE_CASES)


def test_a_format_1_checkpoint_is_reported_as_old(tmp_path):
    path = tmp_path / "x.ckpt"  # exactly what overparam_jax wrote before format 2
    path.write_bytes(pickle.dumps({"format": 1, "fingerprint": FP, "payload": {"x": np.arange(3)}},
                                  protocol=pickle.HIGHEST_PROTOCOL))
    with pytest.raises(CheckpointMismatch, match=f"^checkpoint {path} was written by an {OLD_FORMAT}$"):
        load_checkpoint(path, FP)


def test_a_format_1_folder_is_reported_as_old(tmp_path):
    CheckpointDir(tmp_path, experiment="e", config={})
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    (tmp_path / "manifest.json").write_text(json.dumps({**manifest, "format": 1}))
    with pytest.raises(CheckpointMismatch, match=OLD_FORMAT):
        CheckpointDir(tmp_path, experiment="e", config={})


# ------------------------------------------------------------------------ damaged files

def _write_archive(path, document, **arrays):
    with zipfile.ZipFile(path, "w") as archive:
        for name, a in {"checkpoint": np.array(json.dumps(document)), **arrays}.items():
            with archive.open(f"{name}.npy", "w") as member:
                np.lib.format.write_array(member, np.asarray(a), allow_pickle=False)


def _valid(path):
    return save_checkpoint(path, FP, {"x": np.arange(100.0), "y": [1, 2]})


def _truncated(path):
    data = _valid(path).read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _corrupt_member(path):
    data = bytearray(_valid(path).read_bytes())
    i = data.find(np.arange(100.0).tobytes()[8:16])
    data[i] ^= 0xFF  # one bit of an array's data: the CRC catches it
    path.write_bytes(bytes(data))


def _into(save, *args, **kwargs):
    """Write with np.save/np.savez to exactly the given path (they add a suffix to names)."""
    def write(path):
        with open(path, "wb") as f:
            save(f, *args, **kwargs)
    return write


DAMAGED = {
    "empty file": (lambda p: p.write_bytes(b""), "not a zip archive"),
    "garbage": (lambda p: p.write_bytes(np.random.default_rng(0).bytes(1000)), "not a zip archive"),
    "json": (lambda p: p.write_text(json.dumps({"format": 2})), "not a zip archive"),
    "npy": (_into(np.save, np.arange(3)), "not a zip archive"),
    "truncated": (_truncated, "BadZipFile"),
    "corrupt member": (_corrupt_member, "BadZipFile: Bad CRC-32"),
    "empty zip": (lambda p: zipfile.ZipFile(p, "w").close(), "no 'checkpoint' member"),
    "other npz": (_into(np.savez, x=np.arange(3)), "no 'checkpoint' member"),
    "not json": (_into(np.savez, checkpoint=np.array("{nope")), "JSONDecodeError"),
    "document as bytes": (_into(np.savez, checkpoint=np.frombuffer(b"{}", np.uint8)),
                          "not a 0-d unicode array"),
    "keys": (lambda p: _write_archive(p, {"format": 2}), r"not \{format, fingerprint, payload\}"),
    "NaN in payload": (lambda p: _write_archive(p, {"format": 2, "fingerprint": FP, "payload": float("nan")}),
                       "NaN in the document"),
    "missing member": (lambda p: _write_archive(p, {"format": 2, "fingerprint": FP, "payload": {"array": "a0"}}),
                       "no array member 'a0'"),
    "extra member": (lambda p: _write_archive(p, {"format": 2, "fingerprint": FP, "payload": 1}, a0=np.ones(1)),
                     r"unreferenced members \['a0'\]"),
    "shared member": (lambda p: _write_archive(p, {"format": 2, "fingerprint": FP, "payload": [
        {"array": "a0"}, {"array": "a0"}]}, a0=np.ones(1)), "repeated array reference"),
    "string member": (lambda p: _write_archive(p, {"format": 2, "fingerprint": FP, "payload": {"array": "a0"}},
                                               a0=np.array(["s"])), "not an array of bool or numeric dtype"),
    "document as member": (lambda p: _write_archive(p, {"format": 2, "fingerprint": FP,
                                                        "payload": {"array": "checkpoint"}}), "no array member"),
    "unknown tag": (lambda p: _write_archive(p, {"format": 2, "fingerprint": FP, "payload": {"set": [1]}}),
                    "unknown node 'set'"),
    "finite float by bits": (lambda p: _write_archive(p, {"format": 2, "fingerprint": FP,
                                                          "payload": {"float": "3ff0000000000000"}}), "finite float"),
    "bad ml_dtype": (lambda p: _write_archive(p, {"format": 2, "fingerprint": FP, "payload": {
        "array": "a0", "ml_dtype": "object"}}, a0=np.ones(1, np.uint8)), "cannot hold ml_dtype 'object'"),
}


@pytest.mark.parametrize("name", sorted(DAMAGED))
def test_a_file_that_is_not_a_checkpoint_is_reported_in_one_line(tmp_path, name):
    make, reason = DAMAGED[name]
    path = tmp_path / "x.ckpt"
    make(path)
    with pytest.raises(CheckpointMismatch, match=NOT_THIS_FORMAT) as info:
        load_checkpoint(path, FP)
    message = str(info.value)
    assert "\n" not in message and message.endswith("delete it or use another checkpoint location")
    assert re.search(reason, message), message


def test_the_damage_fixtures_start_from_a_loadable_file(tmp_path):
    assert_identical(load_checkpoint(_valid(tmp_path / "x.ckpt"), FP), {"x": np.arange(100.0), "y": [1, 2]})


# ------------------------------------------------------------------------ CheckpointDir

def test_memo_computes_once_and_returns_the_same_types_when_resumed(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return {"loss": jnp.arange(3.0), "best": np.float64(0.5), "steps": (1, 2), "bf": jnp.ones(2, jnp.bfloat16)}

    folder = CheckpointDir(tmp_path / "run", experiment="e", config={"n": 1})
    assert not folder.resumed
    computed = folder.memo("pilot", compute)
    assert folder.resumed and folder.stage("pilot").name == "pilot.ckpt"
    again = CheckpointDir(tmp_path / "run", experiment="e", config={"n": 1})
    assert again.resumed
    loaded = again.memo("pilot", compute)
    assert calls == [1]
    assert_identical(loaded, computed)
    assert_identical(computed, {"loss": np.arange(3.0), "best": np.float64(0.5), "steps": (1, 2),
                                "bf": np.ones(2, ml_dtypes.bfloat16)})
    again.remove()
    assert not (tmp_path / "run").exists()


def test_memo_refuses_a_namedtuple_and_saves_nothing(tmp_path):
    folder = CheckpointDir(tmp_path, experiment="e", config={})
    with pytest.raises(TypeError, match=r"^payload is a .*Pair \(a NamedTuple\)"):
        folder.memo("pilot", lambda: Pair(np.zeros(1), np.ones(1)))
    assert not folder.resumed


def test_memo_of_leaves_restores_a_namedtuple(tmp_path):
    folder = CheckpointDir(tmp_path, experiment="e", config={})
    value = Pair(jnp.zeros(2), jnp.ones((1, 3)))
    saved = folder.memo("pilot", lambda: tree_to_leaves(value))
    restored = leaves_into(value, CheckpointDir(tmp_path, experiment="e", config={}).memo("pilot", None))
    assert type(restored) is Pair
    assert_identical(tuple(restored), tuple(np.asarray(x) for x in value))
    assert_identical(saved, [np.asarray(x) for x in value])


def test_a_changed_configuration_is_named(tmp_path):
    CheckpointDir(tmp_path, experiment="e", config={"seed": 0})
    with pytest.raises(CheckpointMismatch, match=r"config\.seed: 0 in the checkpoint, 1 now"):
        CheckpointDir(tmp_path, experiment="e", config={"seed": 1})


# ------------------------------------------------------------------------ leaves of pytrees

def _adam_state():
    params = {"w": jnp.arange(6.0).reshape(2, 3), "b": jnp.zeros(3, jnp.float32)}
    optimizer = optax.adam(1e-2)
    state = optimizer.init(params)
    grads = jax.tree_util.tree_map(jnp.ones_like, params)
    return params, optimizer.update(grads, state, params)[1]


def test_an_optax_state_round_trips_through_its_leaves(tmp_path):
    params, state = _adam_state()
    loaded = round_trip(tmp_path, {"params": tree_to_leaves(params), "state": tree_to_leaves(state)})
    template = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), (params, state))
    restored = leaves_into(template, loaded["params"] + loaded["state"])
    assert jax.tree_util.tree_structure(restored) == jax.tree_util.tree_structure((params, state))
    for found, expected in zip(jax.tree_util.tree_leaves(restored), jax.tree_util.tree_leaves((params, state))):
        assert_identical(found, np.asarray(expected))


def test_tree_to_leaves_refuses_a_non_numeric_leaf():
    with pytest.raises(TypeError, match=r"leaf 1 of the tree is an array of dtype <U3"):
        tree_to_leaves([np.zeros(1), "abc"])


LEAF_MISMATCHES = [
    ([np.zeros(2)], r"holds 1 leaves; the template has 2"),
    ([np.zeros(2), np.zeros(2), np.zeros(2)], r"holds 3 leaves; the template has 2"),
    ([np.zeros(2), np.zeros((3, 1), np.float32)], (r"leaf 1 of the checkpoint has shape \(3, 1\) and "
     r"dtype float32; the template's has shape \(3,\) and dtype float32")),
    ([np.zeros(2, np.float32), np.zeros(3, np.float32)], (r"leaf 0 .* dtype float32; the template's "
     r"has shape \(2,\) and dtype float64")),
    ([np.zeros(2), 1.0], r"leaf 1 of the checkpoint is a float, not an array"),
    ({"a": np.zeros(2)}, r"holds a dict where a list of 2 leaves was expected"),
]


@pytest.mark.parametrize("leaves, message", LEAF_MISMATCHES)
def test_leaves_into_checks_count_shapes_and_dtypes(leaves, message):
    template = Pair(np.zeros(2), np.zeros(3, np.float32))
    with pytest.raises(CheckpointMismatch, match=message):
        leaves_into(template, leaves)


def test_leaves_into_accepts_what_matches():
    template = Pair(jnp.zeros(2, jnp.float32), np.zeros((), np.int32))
    restored = leaves_into(template, [np.ones(2, np.float32), np.array(7, np.int32)])
    assert type(restored) is Pair and restored.b == 7 and restored.a.dtype == np.float32
