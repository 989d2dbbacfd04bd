"""Weights on disk: npz and safetensors round trips, PyTorch .pth without torch, hostile and
corrupt files refused, atomic writes."""
import json
import os
import pickle
import struct
import subprocess
import sys
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

from cvcore.io import weights as W
from cvcore.io.weights import (UnsafePickleError, load_npz, load_safetensors, load_torch,
                               load_weights, save_npz, save_safetensors, save_weights)

ROOT = Path(__file__).resolve().parents[1]


def _state(rng):
    """A state dict with the dtypes a model has, plus awkward names."""
    return OrderedDict([
        ("conv1.weight", rng.standard_normal((4, 3, 3, 3)).astype(np.float32)),
        ("bn1.num_batches_tracked", np.array(7, dtype=np.int64)),
        ("file", rng.standard_normal(5).astype(np.float64)),          # np.savez's own keyword
        ("half", rng.standard_normal((2, 3)).astype(np.float16)),
        ("mask", np.array([True, False, True])),
        ("bytes", np.arange(5, dtype=np.uint8)),
        ("ids", np.arange(-3, 3, dtype=np.int32)),
        ("empty", np.zeros((0, 4), dtype=np.float32)),
        ("layer1.0.downsample.0.weight", rng.standard_normal((8, 4, 1, 1)).astype(np.float32)),
    ])


def _assert_same(a, b):
    assert list(a) == list(b)
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        # regression: save_npz once wrote 0-d arrays as shape (1,), which assert_array_equal
        # alone does not see (it broadcasts)
        assert a[k].shape == b[k].shape, k
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def _leftovers(directory):
    return sorted(p.name for p in Path(directory).iterdir() if p.name.endswith(".tmp"))


# -- npz ---------------------------------------------------------------------------------------
def test_npz_round_trip_keeps_names_order_dtypes(tmp_path, rng):
    state = _state(rng)
    save_npz(tmp_path / "w.npz", state)
    _assert_same(load_npz(tmp_path / "w.npz"), state)
    with np.load(tmp_path / "w.npz", allow_pickle=False) as z:    # plain NumPy reads it too
        np.testing.assert_array_equal(z["conv1.weight"], state["conv1.weight"])


def test_npz_refuses_pickled_objects_and_corruption(tmp_path, rng):
    np.savez(tmp_path / "obj.npz", a=np.array([{"x": 1}], dtype=object))
    with pytest.raises(ValueError, match="refusing to unpickle"):
        load_npz(tmp_path / "obj.npz")
    save_npz(tmp_path / "w.npz", _state(rng))
    raw = (tmp_path / "w.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="not an .npz"):
        load_npz(tmp_path / "cut.npz")
    flipped = bytearray(raw)
    flipped[200] ^= 0xFF                       # inside conv1.weight's data: CRC no longer matches
    (tmp_path / "bad.npz").write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match="corrupt"):
        load_npz(tmp_path / "bad.npz")
    with pytest.raises(FileNotFoundError, match="no weights file"):
        load_npz(tmp_path / "missing.npz")
    np.savez(tmp_path / "rec.npz", r=np.zeros(2, dtype=[("a", "f4"), ("b", "i4")]))
    with pytest.raises(ValueError, match="r has dtype"):
        load_npz(tmp_path / "rec.npz")
    with zipfile.ZipFile(tmp_path / "txt.npz", "w") as zf:
        zf.writestr("notes.txt", "hello")
    with pytest.raises(ValueError, match="'notes.txt' is not a .npy array"):
        load_npz(tmp_path / "txt.npz")
    with pytest.raises(TypeError, match="x has dtype object"):
        save_npz(tmp_path / "o.npz", {"x": np.array([None])})


# -- safetensors -------------------------------------------------------------------------------
def test_safetensors_round_trip_with_metadata(tmp_path, rng):
    state = _state(rng)
    save_safetensors(tmp_path / "w.safetensors", state, metadata={"arch": "resnet20"})
    out, meta = load_safetensors(tmp_path / "w.safetensors", with_metadata=True)
    _assert_same(out, state)
    assert meta == {"arch": "resnet20"}
    raw = (tmp_path / "w.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    assert (8 + n) % 8 == 0                    # header padded so the buffer starts aligned
    header = json.loads(raw[8:8 + n])
    assert header["conv1.weight"] == {"dtype": "F32", "shape": [4, 3, 3, 3],
                                      "data_offsets": header["conv1.weight"]["data_offsets"]}
    for name, info in header.items():          # every tensor aligned to its item size
        if name != "__metadata__":
            assert info["data_offsets"][0] % state[name].dtype.itemsize == 0


def _hand_written(tensors, pad=0):
    """A safetensors file assembled by hand from the format description (independent of the
    writer under test): [(name, dtype, shape, bytes)]."""
    header, blob = {}, b""
    for name, dtype, shape, data in tensors:
        header[name] = {"dtype": dtype, "shape": shape,
                        "data_offsets": [len(blob), len(blob) + len(data)]}
        blob += data
    text = json.dumps(header).encode() + b" " * pad
    return struct.pack("<Q", len(text)) + text + blob


def test_safetensors_reads_a_hand_written_file(tmp_path):
    # BF16 is the top 16 bits of float32: 1.0 = 0x3F80, -2.5 = 0xC020
    raw = _hand_written([("b", "BF16", [2], struct.pack("<HH", 0x3F80, 0xC020)),
                         ("x", "F32", [1, 2], struct.pack("<ff", 0.5, -3.0)),
                         ("i", "I64", [], struct.pack("<q", -9))], pad=3)
    (tmp_path / "h.safetensors").write_bytes(raw)
    out = load_safetensors(tmp_path / "h.safetensors")
    np.testing.assert_array_equal(out["b"], np.array([1.0, -2.5], dtype=np.float32))
    np.testing.assert_array_equal(out["x"], [[0.5, -3.0]])
    assert out["i"].dtype == np.int64 and out["i"].shape == () and out["i"] == -9


@pytest.mark.parametrize("tensors,tail,message", [
    ([("a", "F32", [2], b"\0" * 8)], b"", None),                               # valid baseline
    ([("a", "F32", [3], b"\0" * 8)], b"", "span 8"),                           # size vs shape
    ([("a", "F32", [2], b"\0" * 8)], b"\0" * 4, "trailing bytes"),
    ([("a", "Q8", [2], b"\0" * 8)], b"", "unsupported dtype 'Q8'"),
    ([("a", "F32", [-2], b"\0" * 8)], b"", "invalid shape"),
])
def test_safetensors_header_checks(tmp_path, tensors, tail, message):
    (tmp_path / "t.safetensors").write_bytes(_hand_written(tensors) + tail)
    if message is None:
        assert load_safetensors(tmp_path / "t.safetensors")["a"].shape == (2,)
    else:
        with pytest.raises(ValueError, match=message):
            load_safetensors(tmp_path / "t.safetensors")


def _raw_header(tmp_path, header, blob):
    text = json.dumps(header).encode()
    path = tmp_path / "r.safetensors"
    path.write_bytes(struct.pack("<Q", len(text)) + text + blob)
    return path


def test_safetensors_offsets_are_validated(tmp_path, rng):
    two = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
           "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}
    with pytest.raises(ValueError, match="b overlaps"):
        load_safetensors(_raw_header(tmp_path, two, b"\0" * 12))
    two["b"]["data_offsets"] = [12, 20]
    with pytest.raises(ValueError, match="belongs to no tensor"):
        load_safetensors(_raw_header(tmp_path, two, b"\0" * 20))
    with pytest.raises(ValueError, match="truncated: b needs bytes up to 20"):
        load_safetensors(_raw_header(tmp_path, two, b"\0" * 16))
    two["b"]["data_offsets"] = [8, 4]
    with pytest.raises(ValueError, match="invalid data_offsets"):
        load_safetensors(_raw_header(tmp_path, two, b"\0" * 16))
    # whole-file damage
    save_safetensors(tmp_path / "w.safetensors", _state(rng))
    raw = (tmp_path / "w.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(raw[:-1])
    with pytest.raises(ValueError, match="truncated"):
        load_safetensors(tmp_path / "cut.safetensors")
    (tmp_path / "cut.safetensors").write_bytes(raw[:40])
    with pytest.raises(ValueError, match="truncated: header needs"):
        load_safetensors(tmp_path / "cut.safetensors")
    (tmp_path / "big.safetensors").write_bytes(struct.pack("<Q", 2 ** 40) + raw[8:])
    with pytest.raises(ValueError, match="header length"):
        load_safetensors(tmp_path / "big.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(struct.pack("<Q", 5) + b"{nope")
    with pytest.raises(ValueError, match="corrupt .safetensors header"):
        load_safetensors(tmp_path / "junk.safetensors")
    (tmp_path / "tiny.safetensors").write_bytes(b"abc")
    with pytest.raises(ValueError, match="shorter than the 8-byte"):
        load_safetensors(tmp_path / "tiny.safetensors")


def test_safetensors_agrees_with_the_safetensors_package(tmp_path, rng):
    st = pytest.importorskip("safetensors.numpy")
    state = {k: v for k, v in _state(rng).items() if k != "empty"}
    save_safetensors(tmp_path / "ours.safetensors", state)
    _assert_same(OrderedDict((k, st.load_file(str(tmp_path / "ours.safetensors"))[k])
                             for k in state), state)
    st.save_file(state, str(tmp_path / "theirs.safetensors"), metadata={"m": "1"})
    out, meta = load_safetensors(tmp_path / "theirs.safetensors", with_metadata=True)
    _assert_same(OrderedDict((k, out[k]) for k in state), state)
    assert meta == {"m": "1"}


# -- atomic writes -----------------------------------------------------------------------------
@pytest.mark.parametrize("save,suffix", [(save_npz, ".npz"), (save_safetensors, ".safetensors")])
def test_failed_save_leaves_old_file_and_no_partial_file(tmp_path, rng, monkeypatch, save, suffix):
    path = tmp_path / f"w{suffix}"
    old = _state(rng)
    save(path, old)
    before = path.read_bytes()

    def fail_replace(src, dst):
        raise OSError("disk full (simulated)")
    monkeypatch.setattr(os, "replace", fail_replace)
    with pytest.raises(OSError, match="simulated"):
        save(path, {"new": np.ones(3, dtype=np.float32)})
    monkeypatch.undo()
    assert path.read_bytes() == before and _leftovers(tmp_path) == []


def test_save_interrupted_mid_write_leaves_nothing(tmp_path, monkeypatch):
    calls = []
    real = np.lib.format.write_array

    def write_then_fail(fp, array, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt        # stopped halfway through the second array
        return real(fp, array, **kw)
    monkeypatch.setattr(np.lib.format, "write_array", write_then_fail)
    with pytest.raises(KeyboardInterrupt):
        save_npz(tmp_path / "w.npz", {"a": np.ones(3), "b": np.zeros(3)})
    assert list(tmp_path.iterdir()) == []


def test_save_and_load_weights_choose_by_extension(tmp_path, rng):
    state = _state(rng)
    for suffix in (".npz", ".safetensors"):
        save_weights(tmp_path / f"w{suffix}", state)
        _assert_same(load_weights(tmp_path / f"w{suffix}"), state)
    with pytest.raises(ValueError, match="use .npz or .safetensors"):
        save_weights(tmp_path / "w.pth", state)
    with pytest.raises(ValueError, match="cannot tell the weights format"):
        load_weights(tmp_path / "w.bin")


# -- PyTorch files -----------------------------------------------------------------------------
def _torch_model(torch):
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1, bias=False), torch.nn.BatchNorm2d(4),
        torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 2))
    model.train()
    model(torch.randn(2, 3, 5, 5))            # moves running stats and num_batches_tracked
    model(torch.randn(2, 3, 5, 5))
    return model


def test_pth_loads_in_a_process_where_torch_cannot_be_imported(tmp_path):
    torch = pytest.importorskip("torch")
    state = _torch_model(torch).state_dict()
    torch.save(state, tmp_path / "model.pth")
    script = (
        "import sys\n"
        "sys.modules['torch'] = None  # any 'import torch' now raises ImportError\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from cvcore.io.weights import load_torch, save_npz\n"
        f"sd = load_torch({str(tmp_path / 'model.pth')!r})\n"
        f"save_npz({str(tmp_path / 'out.npz')!r}, sd)\n"
        "assert sys.modules['torch'] is None\n"
        "print('loaded', len(sd))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"loaded {len(state)}"
    out = load_npz(tmp_path / "out.npz")
    assert list(out) == list(state)
    for name, tensor in state.items():
        np.testing.assert_array_equal(out[name], tensor.numpy(), err_msg=name)
        assert out[name].dtype == tensor.numpy().dtype, name
        assert out[name].shape == tuple(tensor.shape), name
    assert out["1.num_batches_tracked"].dtype == np.int64 and out["1.num_batches_tracked"] == 2


def test_pth_views_shared_storage_and_dtypes(tmp_path):
    torch = pytest.importorskip("torch")
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    state = OrderedDict([
        ("base", base), ("slice", base[1:, ::2]), ("t", base.t()), ("row", base[2]),
        ("f64", torch.randn(3, dtype=torch.float64)), ("f16", torch.randn(3).half()),
        ("i32", torch.tensor([1, -2], dtype=torch.int32)), ("u8", torch.tensor([0, 255],
                                                                               dtype=torch.uint8)),
        ("flag", torch.tensor([True, False])), ("empty", torch.zeros(0, 3)),
        ("bf16", torch.tensor([1.0, -2.5, 3.0e5], dtype=torch.bfloat16)),
        ("expanded", torch.tensor([1.0, 2.0, 3.0]).expand(2, 3)),          # stride (0, 1)
    ])
    torch.save(state, tmp_path / "v.pt")
    out = load_torch(tmp_path / "v.pt")
    for name, tensor in state.items():
        want = tensor.float().numpy() if tensor.dtype == torch.bfloat16 else tensor.numpy()
        np.testing.assert_array_equal(out[name], want, err_msg=name)
        assert out[name].dtype == want.dtype and out[name].shape == want.shape, name
        assert out[name].flags.writeable and out[name].flags.c_contiguous
    out["base"][...] = -1.0                    # views of one storage load as independent arrays
    np.testing.assert_array_equal(out["slice"], state["slice"].numpy())
    np.testing.assert_array_equal(out["t"], state["t"].numpy())


def test_pth_rezipped_with_compression_still_loads(tmp_path):
    torch = pytest.importorskip("torch")
    state = _torch_model(torch).state_dict()
    torch.save(state, tmp_path / "m.pth")
    with zipfile.ZipFile(tmp_path / "m.pth") as src, \
            zipfile.ZipFile(tmp_path / "z.pth", "w", compression=zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            dst.writestr(item.filename, src.read(item.filename))
    out = load_torch(tmp_path / "z.pth")
    for name, tensor in state.items():
        np.testing.assert_array_equal(out[name], tensor.numpy(), err_msg=name)


def test_pth_of_parameters_dict_loads(tmp_path):
    torch = pytest.importorskip("torch")
    model = _torch_model(torch)
    torch.save(dict(model.named_parameters()), tmp_path / "p.pth")
    out = load_torch(tmp_path / "p.pth")
    for name, p in model.named_parameters():
        np.testing.assert_array_equal(out[name], p.detach().numpy())


class _Payload:
    """Pickles to a call of os.system that would create the marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_hostile_pth_is_refused_and_the_payload_never_runs(tmp_path):
    torch = pytest.importorskip("torch")
    marker = tmp_path / "PWNED"
    # A real torch.save of a dict holding a tensor and the payload.
    torch.save({"w": torch.ones(2), "evil": _Payload(marker)}, tmp_path / "evil.pth")
    with pytest.raises(UnsafePickleError, match=r"refusing to unpickle (posix|os|nt)\.system "
                                                r"from .*evil\.pth"):
        load_torch(tmp_path / "evil.pth")
    assert not marker.exists()
    with zipfile.ZipFile(tmp_path / "evil.pth") as zf:
        assert b"system" in zf.read("evil/data.pkl")    # the call is in the file
    assert not marker.exists()


def test_whole_model_and_other_objects_are_refused(tmp_path):
    torch = pytest.importorskip("torch")
    torch.save(_torch_model(torch), tmp_path / "model.pth")     # the whole module, not a state
    with pytest.raises(UnsafePickleError, match=r"refusing to unpickle torch\.nn\.modules\."):
        load_torch(tmp_path / "model.pth")
    torch.save({"w": torch.ones(2), "epoch": 3}, tmp_path / "ckpt.pth")
    with pytest.raises(ValueError, match="entry 'epoch' is a int, not a tensor"):
        load_torch(tmp_path / "ckpt.pth")
    torch.save([torch.ones(2)], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="holds a list, not a state dict"):
        load_torch(tmp_path / "list.pth")


def _pth_with_pickle(path, payload: bytes):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", payload)
        zf.writestr("archive/byteorder", "little")
    return path


def test_hand_made_hostile_pickles(tmp_path):
    marker = tmp_path / "PWNED"
    evil = pickle.dumps({"w": _Payload(marker)}, protocol=2)
    with pytest.raises(UnsafePickleError, match="system"):
        load_torch(_pth_with_pickle(tmp_path / "a.pth", evil))
    # builtins.eval through the old text protocol
    text = b"cbuiltins\neval\n(Vopen(%r, 'w')\ntR." % str(marker).encode()
    with pytest.raises(UnsafePickleError, match=r"refusing to unpickle builtins\.eval"):
        load_torch(_pth_with_pickle(tmp_path / "b.pth", text))
    # calling an allowed name the wrong way: torch.FloatStorage() is not callable here
    call = b"\x80\x02ctorch\nFloatStorage\n)R."
    with pytest.raises(ValueError, match="not a plain PyTorch state dict"):
        load_torch(_pth_with_pickle(tmp_path / "c.pth", call))
    assert not marker.exists()
    # The payload is live: the ordinary unpickler runs it (touching a file in tmp_path).
    pickle.loads(evil)
    assert marker.exists()


def test_corrupt_and_foreign_pth_files(tmp_path):
    torch = pytest.importorskip("torch")
    state = _torch_model(torch).state_dict()
    torch.save(state, tmp_path / "m.pth")
    raw = (tmp_path / "m.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(raw[: len(raw) - 100])
    with pytest.raises(ValueError, match="not a PyTorch .pt/.pth file"):
        load_torch(tmp_path / "cut.pth")
    with zipfile.ZipFile(tmp_path / "m.pth") as zf:
        info = zf.getinfo("m/data/0")
    # the data starts after the *local* header, whose extra field (torch's alignment padding)
    # is not the central directory's
    name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26:info.header_offset + 30])
    start = info.header_offset + 30 + name_len + extra_len
    flipped = bytearray(raw)
    flipped[start + 3] ^= 0xFF                 # first storage's bytes: its CRC no longer matches
    (tmp_path / "crc.pth").write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match="corrupt"):
        load_torch(tmp_path / "crc.pth")
    with zipfile.ZipFile(tmp_path / "m.pth") as src, \
            zipfile.ZipFile(tmp_path / "gone.pth", "w") as dst:
        for item in src.infolist():
            if item.filename != "m/data/1":
                dst.writestr(item, src.read(item.filename))
    with pytest.raises(ValueError, match="storage m/data/1 is missing"):
        load_torch(tmp_path / "gone.pth")
    torch.save(state, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    legacy = (tmp_path / "legacy.pth").read_bytes()
    (tmp_path / "legacy_cut.pth").write_bytes(legacy[:-50])
    with pytest.raises(ValueError, match="truncated"):
        load_torch(tmp_path / "legacy_cut.pth")
    save_npz(tmp_path / "not_torch.pth", {"a": np.ones(2)})
    with pytest.raises(ValueError, match="not a PyTorch file"):
        load_torch(tmp_path / "not_torch.pth")


def test_torch_resnet20_pth_loads_into_cvcore_resnet20_with_same_logits(tmp_path):
    torch = pytest.importorskip("torch")
    from cvcore.nn.models import resnet20
    from benchmarks.torch_models import torch_resnet     # hand-built, no torchvision
    torch.manual_seed(0)
    net = torch_resnet("resnet20", num_classes=10, in_channels=3)
    with torch.no_grad():                       # non-trivial BN affine params and running stats
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
        net.train()
        for _ in range(3):
            net(torch.randn(4, 3, 16, 16))
    net.eval()
    torch.save(net.state_dict(), tmp_path / "resnet20.pth")
    model = resnet20(num_classes=10, rng=1)
    model.load_state_dict(load_torch(tmp_path / "resnet20.pth"))     # strict: every key matches
    model.eval()
    x = np.random.default_rng(3).standard_normal((2, 3, 16, 16)).astype(np.float32)
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    logits = model(x)
    np.testing.assert_allclose(logits, want, rtol=1e-4, atol=1e-5)
    assert model.state_dict()["layer1.0.bn1.num_batches_tracked"] == 3
    # and on through cvcore's own formats: identical logits after a round trip
    for suffix in (".safetensors", ".npz"):
        save_weights(tmp_path / f"r20{suffix}", model.state_dict())
        again = resnet20(num_classes=10, rng=2)
        again.load_state_dict(load_weights(tmp_path / f"r20{suffix}"))
        np.testing.assert_array_equal(again.eval()(x), logits)


def _state_dict_pickle(numel: int, size=None, stride=None) -> bytes:
    """Protocol-2 pickle of {"w": tensor on a FloatStorage of ``numel`` elements (default size
    ``(numel,)``, stride ``(1,)``)}, opcode by opcode, as torch.save writes it (no torch needed)."""
    def text(s):
        return b"X" + struct.pack("<I", len(s)) + s.encode()

    def integer(v):
        return b"J" + struct.pack("<i", v)

    def ints(values):
        return b"(" + b"".join(integer(v) for v in values) + b"t"
    size = (numel,) if size is None else size
    stride = (1,) if stride is None else stride
    return (b"\x80\x02ccollections\nOrderedDict\n)R(" + text("w")
            + b"ctorch._utils\n_rebuild_tensor_v2\n(("
            + text("storage") + b"ctorch\nFloatStorage\n" + text("0") + text("cpu")
            + integer(numel) + b"tQ" + integer(0) + ints(size) + ints(stride)
            + b"\x89ccollections\nOrderedDict\n)Rt" + b"Ru.")


def test_hand_made_state_dict_pickle_loads_and_lying_sizes_are_refused(tmp_path):
    good = tmp_path / "good.pth"
    with zipfile.ZipFile(good, "w") as zf:
        zf.writestr("archive/data.pkl", _state_dict_pickle(3))
        zf.writestr("archive/data/0", struct.pack("<3f", 1.0, 2.0, -3.0))
    np.testing.assert_array_equal(load_torch(good)["w"], [1.0, 2.0, -3.0])
    # A member whose directory entry claims 1 GiB (and a pickle agreeing) in a tiny file:
    # refused before anything that size is allocated.
    lying = tmp_path / "lying.pth"
    numel = 2 ** 28
    with zipfile.ZipFile(lying, "w") as zf:
        zf.writestr("archive/data.pkl", _state_dict_pickle(numel))
        zf.writestr("archive/data/0", b"\0" * 12)
    raw = bytearray(lying.read_bytes())
    entry = raw.rindex(b"PK\x01\x02")      # central-directory entry of the last member
    assert raw[entry + 46:entry + 46 + 14] == b"archive/data/0"
    raw[entry + 20:entry + 28] = struct.pack("<II", numel * 4, numel * 4)
    lying.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="past the end of the file"):
        load_torch(lying)


def test_docstring_examples_run():
    import doctest
    result = doctest.testmod(W)
    assert result.attempted > 0 and result.failed == 0


def test_zero_stride_tensors_expand_but_not_without_limit(tmp_path):
    def pth(name, size, stride):
        path = tmp_path / name
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("archive/data.pkl", _state_dict_pickle(1, size, stride))
            zf.writestr("archive/data/0", struct.pack("<f", 2.5))
        return path
    # torch.save(torch.tensor([2.5]).expand(3, 4)) keeps stride (0, 0): loads as a full array
    np.testing.assert_array_equal(load_torch(pth("ok.pth", (3, 4), (0, 0)))["w"],
                                  np.full((3, 4), 2.5, dtype=np.float32))
    with pytest.raises(ValueError, match="would expand a storage of 1 elements"):
        load_torch(pth("bomb.pth", (2 ** 20, 2 ** 20), (0, 0)))       # 4 TiB from 4 bytes


# -- PyTorch's legacy (pre-1.6, non-zip) format --------------------------------------------------
def test_legacy_pth_loads_like_torch_including_views_dtypes_and_cuda_locations(tmp_path):
    torch = pytest.importorskip("torch")
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    state = OrderedDict([
        ("base", base), ("slice", base[1:, ::2]), ("t", base.t()),
        ("f64", torch.randn(3, dtype=torch.float64)), ("i64", torch.tensor([5, -6])),
        ("bf16", torch.tensor([1.0, -2.5], dtype=torch.bfloat16)), ("empty", torch.zeros(0, 3)),
    ])
    state.update(_torch_model(torch).state_dict())
    torch.save(state, tmp_path / "old.pth", _use_new_zipfile_serialization=False)
    raw = (tmp_path / "old.pth").read_bytes()
    assert not zipfile.is_zipfile(tmp_path / "old.pth")
    # the same file as if saved from a GPU: every storage's location string becomes "cuda:0"
    cpu = b"X" + struct.pack("<I", 3) + b"cpu"
    assert cpu in raw
    (tmp_path / "gpu.pth").write_bytes(raw.replace(cpu, b"X" + struct.pack("<I", 6) + b"cuda:0"))
    for name in ("old.pth", "gpu.pth"):
        out = load_torch(tmp_path / name)
        assert list(out) == list(state)
        for key, tensor in state.items():
            want = tensor.float().numpy() if tensor.dtype == torch.bfloat16 else tensor.numpy()
            np.testing.assert_array_equal(out[key], want, err_msg=key)
            assert out[key].dtype == want.dtype and out[key].shape == want.shape, key


def test_legacy_pth_refuses_everything_but_tensors(tmp_path):
    torch = pytest.importorskip("torch")
    marker = tmp_path / "PWNED"
    torch.save({"w": torch.ones(2), "evil": _Payload(marker)}, tmp_path / "evil.pth",
               _use_new_zipfile_serialization=False)
    with pytest.raises(UnsafePickleError, match=r"refusing to unpickle (posix|os|nt)\.system"):
        load_torch(tmp_path / "evil.pth")
    torch.save(_torch_model(torch), tmp_path / "model.pth", _use_new_zipfile_serialization=False)
    with pytest.raises(UnsafePickleError, match=r"refusing to unpickle torch\.nn\.modules\."):
        load_torch(tmp_path / "model.pth")
    torch.save({"w": torch.ones(2), "epoch": 3}, tmp_path / "ckpt.pth",
               _use_new_zipfile_serialization=False)
    with pytest.raises(ValueError, match="entry 'epoch' is a int, not a tensor"):
        load_torch(tmp_path / "ckpt.pth")
    # a hostile header: the magic-number pickle itself calls os.system
    (tmp_path / "head.pth").write_bytes(pickle.dumps(_Payload(marker), protocol=2))
    with pytest.raises(UnsafePickleError, match="system"):
        load_torch(tmp_path / "head.pth")
    (tmp_path / "plain.pth").write_bytes(pickle.dumps({"a": 1}, protocol=2))
    with pytest.raises(ValueError, match="magic number"):
        load_torch(tmp_path / "plain.pth")
    assert not marker.exists()


def test_published_legacy_cuda_files_load_as_torch_loads_them():
    torch = pytest.importorskip("torch")
    models = ROOT.parent / "shared" / "models"
    if not models.exists():
        pytest.skip(f"shared models not found: {models}")
    for name in ("trades_model_mnist_smallcnn.pt", "wongkolter_mnist.pth"):
        ours = load_torch(models / name)
        ref = torch.load(models / name, map_location="cpu", weights_only=False)
        assert list(ours) == list(ref)
        for key, tensor in ref.items():
            np.testing.assert_array_equal(ours[key], tensor.numpy(), err_msg=key)
