"""Model weights on disk: ``.npz``, ``.safetensors``, and PyTorch ``.pt``/``.pth`` without torch.

A *state dict* here is a mapping ``name -> ndarray`` with torchvision's dotted names
(``conv1.weight``, ``layer1.0.bn1.running_var``), as :meth:`cvcore.nn.Module.state_dict` returns.

Three formats, none of which can run code when read:

``.npz``
    NumPy's zip of ``.npy`` members, one per array, read with ``allow_pickle=False``.
``.safetensors``
    Hugging Face's format (https://huggingface.co/docs/safetensors, "Format"): an 8-byte
    little-endian unsigned header length ``N``; ``N`` bytes of UTF-8 JSON mapping each name to
    ``{"dtype", "shape", "data_offsets": [begin, end]}`` (offsets into the byte buffer that
    follows) plus an optional ``"__metadata__"`` of string to string; then the buffer, each tensor
    little-endian in C order. Written and read here from that description, with every offset
    checked (in bounds, no overlap, no gap, sizes agreeing with dtype and shape).
``.pt`` / ``.pth`` (read only)
    What ``torch.save(model.state_dict(), path)`` writes since PyTorch 1.6: a zip holding
    ``<name>/data.pkl`` (a pickle of the dict) and one ``<name>/data/<key>`` member per tensor
    storage (raw little-endian bytes; ``<name>/byteorder`` says which). Pickle can call any
    importable function, so :func:`load_torch` uses an unpickler that knows only what a state
    dict needs -- ``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2`` (and
    ``_rebuild_parameter``), and the storage type names such as ``torch.FloatStorage`` -- each
    mapped to a small function here that builds NumPy arrays. Any other global (``os.system``, a
    model class, ``builtins.eval``...) is refused before it is looked up, naming it and the file.
``.pt`` / ``.pth`` in PyTorch's legacy format (read only)
    What ``torch.save`` wrote before PyTorch 1.6 (and with ``_use_new_zipfile_serialization=
    False``): five pickles and raw bytes back to back (``torch/serialization.py``, ``_save`` and
    ``_legacy_load``) -- the magic number ``0x1950a86a20f9469cfc6c``, the protocol version 1001,
    a dict of system information (byte order), the state dict itself (storages as persistent ids
    ``("storage", type, key, location, numel, view)``), the list of storage keys, then for each
    key in that order an int64 element count followed by the storage's bytes. The state dict is
    read by the same restricted unpickler; the four other pickles may name no global at all.
    Storages saved from a GPU (``location`` ``"cuda:0"``) are read to the CPU like any other.

Every writer is atomic (:func:`cvcore.io.atomic.atomic_write`): a failed or interrupted save
leaves the previous file intact and no partial file behind.
"""
from __future__ import annotations

import json
import math
import os
import pickle
import struct
import zipfile
import zlib
from collections import OrderedDict
from pathlib import Path

import numpy as np

from cvcore.io.atomic import atomic_write

__all__ = ["save_npz", "load_npz", "save_safetensors", "load_safetensors", "load_torch",
           "save_weights", "load_weights"]


# -- shared checks ------------------------------------------------------------------------------
def _check_state_dict(state_dict, what: str) -> "OrderedDict[str, np.ndarray]":
    """Return ``state_dict`` as an ordered dict of numeric arrays, or raise naming the bad entry."""
    if not hasattr(state_dict, "items"):
        raise TypeError(f"{what} needs a mapping of name -> array, got {type(state_dict).__name__}")
    out = OrderedDict()
    for name, value in state_dict.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"{what}: keys must be non-empty strings, got {name!r}")
        arr = np.asarray(value)
        if arr.dtype == object or arr.dtype.kind not in "biuf":
            raise TypeError(f"{what}: {name} has dtype {arr.dtype}; only bool, integer and float "
                            f"arrays can be saved")
        out[name] = arr
    return out


def _check_readable(path) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no weights file at {path}")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory, not a weights file")
    return path


# -- npz ----------------------------------------------------------------------------------------
def save_npz(path, state_dict) -> None:
    """Write a state dict as an uncompressed ``.npz`` (one ``<name>.npy`` member per array).

    Parameters
    ----------
    path : str or Path
        Destination; written atomically.
    state_dict : mapping of str to array_like
        Numeric arrays; order is kept.
    """
    arrays = _check_state_dict(state_dict, "save_npz")
    with atomic_write(path) as f:
        # The zip is written member by member rather than with np.savez(f, **arrays), whose own
        # keyword ``file`` would collide with a weight called "file".
        with zipfile.ZipFile(f, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for name, arr in arrays.items():
                with zf.open(name + ".npy", mode="w", force_zip64=True) as member:
                    # not np.ascontiguousarray, which turns a 0-d array (num_batches_tracked)
                    # into shape (1,)
                    np.lib.format.write_array(member, np.asarray(arr, order="C"),
                                              allow_pickle=False)


def load_npz(path) -> "OrderedDict[str, np.ndarray]":
    """Read a ``.npz`` state dict (never unpickling anything).

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ValueError
        The file is not an npz, is truncated or corrupt (CRC), or holds object arrays.
    """
    path = _check_readable(path)
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is not an .npz file (not a zip archive; truncated or another "
                         f"format)")
    out = OrderedDict()
    try:
        with np.load(path, allow_pickle=False) as archive:
            for name in archive.files:
                out[name] = archive[name]
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise ValueError(f"{path} holds a pickled (object) array; refusing to unpickle it") \
                from None
        raise ValueError(f"{path} is a corrupt .npz file: {exc}") from None
    except (zipfile.BadZipFile, EOFError, OSError, KeyError) as exc:
        raise ValueError(f"{path} is a corrupt or truncated .npz file: {exc}") from None
    for name, value in out.items():
        if not isinstance(value, np.ndarray):
            raise ValueError(f"{path}: member {name!r} is not a .npy array")
        if value.dtype.kind not in "biuf":
            raise ValueError(f"{path}: {name} has dtype {value.dtype}; weights must be bool, "
                             f"integer or float arrays")
    return out


# -- safetensors --------------------------------------------------------------------------------
# dtype names of the safetensors format -> NumPy dtype (little-endian). BF16 has no NumPy type: it
# is read as its 16 raw bits and widened to float32 (bfloat16 is the top half of a float32).
SAFETENSORS_DTYPES = {
    "BOOL": np.dtype("?"), "U8": np.dtype("u1"), "I8": np.dtype("i1"),
    "U16": np.dtype("<u2"), "I16": np.dtype("<i2"), "F16": np.dtype("<f2"),
    "U32": np.dtype("<u4"), "I32": np.dtype("<i4"), "F32": np.dtype("<f4"),
    "U64": np.dtype("<u8"), "I64": np.dtype("<i8"), "F64": np.dtype("<f8"),
    "BF16": np.dtype("<u2"),
}
_NUMPY_TO_SAFETENSORS = {v.newbyteorder("<") if v.itemsize > 1 else v: k
                         for k, v in SAFETENSORS_DTYPES.items() if k != "BF16"}
SAFETENSORS_MAX_HEADER = 100_000_000  # bytes; the reference implementation's limit
SAFETENSORS_ALIGN = 8  # the header is padded with spaces so the buffer starts 8-byte aligned


def save_safetensors(path, state_dict, metadata=None) -> None:
    """Write a state dict as ``.safetensors``.

    Parameters
    ----------
    path : str or Path
        Destination; written atomically.
    state_dict : mapping of str to array_like
        bool, (u)int8/16/32/64, float16/32/64 arrays. Keys keep their order in the header.
    metadata : mapping of str to str, optional
        Stored as ``__metadata__`` (for example the model name or training recipe).
    """
    arrays = _check_state_dict(state_dict, "save_safetensors")
    if "__metadata__" in arrays:
        raise ValueError("save_safetensors: '__metadata__' is reserved and cannot name a tensor")
    header = {}
    if metadata is not None:
        if not hasattr(metadata, "items") or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise TypeError("metadata must be a mapping of str to str")
        header["__metadata__"] = dict(metadata)
    # Place the widest dtypes first so every tensor starts aligned to its item size.
    order = sorted(arrays, key=lambda name: -arrays[name].dtype.itemsize)
    offsets, position = {}, 0
    for name in order:
        arr = arrays[name]
        dtype = arr.dtype.newbyteorder("<") if arr.dtype.itemsize > 1 else arr.dtype
        if dtype not in _NUMPY_TO_SAFETENSORS:
            raise TypeError(f"save_safetensors: {name} has dtype {arr.dtype}, which safetensors "
                            f"does not store")
        offsets[name] = (position, position + arr.nbytes)
        position += arr.nbytes
    for name, arr in arrays.items():
        dtype = arr.dtype.newbyteorder("<") if arr.dtype.itemsize > 1 else arr.dtype
        header[name] = {"dtype": _NUMPY_TO_SAFETENSORS[dtype], "shape": list(arr.shape),
                        "data_offsets": list(offsets[name])}
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-(8 + len(text)) % SAFETENSORS_ALIGN)
    with atomic_write(path) as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for name in order:
            arr = arrays[name]
            little = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<"))
            f.write(memoryview(little.reshape(-1).view(np.uint8)))    # no extra copy


def _read_exact(f, n: int) -> bytes:
    """``n`` bytes from an unbuffered file (which may return fewer per call), or fewer at EOF."""
    chunks, got = [], 0
    while got < n:
        chunk = f.read(n - got)
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _read_safetensors_header(path: Path, size: int, f):
    if size < 8:
        raise ValueError(f"{path} is not a .safetensors file: {size} bytes, shorter than the "
                         f"8-byte header length")
    (n,) = struct.unpack("<Q", _read_exact(f, 8))
    if n > SAFETENSORS_MAX_HEADER:
        raise ValueError(f"{path}: header length {n} exceeds {SAFETENSORS_MAX_HEADER} bytes; not "
                         f"a .safetensors file or corrupt")
    if 8 + n > size:
        raise ValueError(f"{path} is truncated: header needs {n} bytes, only {size - 8} follow")
    raw = _read_exact(f, n)
    try:
        text = raw.decode("utf-8")
        if not text.lstrip().startswith("{"):
            raise ValueError("header is not a JSON object")

        def no_duplicates(pairs):
            keys = [k for k, _ in pairs]
            if len(set(keys)) != len(keys):
                raise ValueError(f"duplicate keys {sorted({k for k in keys if keys.count(k) > 1})}")
            return dict(pairs)
        header = json.loads(text, object_pairs_hook=no_duplicates)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"{path}: corrupt .safetensors header ({exc})") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path}: corrupt .safetensors header (not a JSON object)")
    return n, header


def load_safetensors(path, with_metadata: bool = False):
    """Read a ``.safetensors`` file written by this module, the ``safetensors`` package or any
    other writer following the format.

    Parameters
    ----------
    path : str or Path
    with_metadata : bool
        Also return the ``__metadata__`` dict (empty if absent).

    Returns
    -------
    OrderedDict of str to ndarray, or (that, dict)
        In header order. ``BF16`` tensors are widened to float32.

    Raises
    ------
    ValueError
        Truncated file, bad header JSON, unknown dtype, offsets out of bounds, overlapping or
        leaving gaps, or a size that disagrees with dtype and shape (the tensor is named).
    """
    path = _check_readable(path)
    size = path.stat().st_size
    with open(path, "rb", buffering=0) as f:
        n, header = _read_safetensors_header(path, size, f)
        buffer_len = size - 8 - n
        entries = _check_safetensors_entries(path, header, buffer_len)
        metadata = header.get("__metadata__") or {}
        out = OrderedDict((name, None) for name in header if name != "__metadata__")
        # The spans tile the buffer in offset order, so one forward pass reads every tensor
        # directly into its own array (no intermediate copy of the whole file).
        for begin, end, name in entries:
            info = header[name]
            dtype = SAFETENSORS_DTYPES[info["dtype"]]
            arr = np.empty(info["shape"], dtype=dtype)
            if end > begin:
                f.seek(8 + n + begin)
                _readinto(f, arr, path, name)
            if info["dtype"] == "BF16":
                arr = (arr.astype(np.uint32) << 16).view(np.float32)
            elif not arr.dtype.isnative:
                arr = arr.astype(arr.dtype.newbyteorder("="))
            out[name] = arr
    return (out, metadata) if with_metadata else out


def _readinto(f, arr: np.ndarray, path, name: str) -> None:
    """Fill ``arr`` from the current position of the (unbuffered) file ``f``.

    Reading straight into the destination array, through an unbuffered file, is several times
    faster for large tensors than ``f.read()`` then a copy (measured: benchmarks/optim_io.py).
    """
    view = memoryview(arr.reshape(-1).view(np.uint8))
    done = 0
    while done < arr.nbytes:
        got = f.readinto(view[done:])
        if not got:
            raise ValueError(f"{path} is truncated: {name} needs {arr.nbytes} bytes, got {done}")
        done += got


def _check_safetensors_entries(path, header: dict, buffer_len: int):
    """Validate every header entry and return ``(begin, end, name)`` sorted by offset."""
    metadata = header.get("__metadata__") or {}
    if not isinstance(metadata, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise ValueError(f"{path}: __metadata__ must map strings to strings")
    spans = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise ValueError(f"{path}: entry {name!r} must have exactly dtype, shape and "
                             f"data_offsets")
        if info["dtype"] not in SAFETENSORS_DTYPES:
            raise ValueError(f"{path}: {name} has unsupported dtype {info['dtype']!r} "
                             f"(supported: {sorted(SAFETENSORS_DTYPES)})")
        shape, offs = info["shape"], info["data_offsets"]
        if (not isinstance(shape, list)
                or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                           for d in shape)):
            raise ValueError(f"{path}: {name} has invalid shape {shape!r}")
        if (not isinstance(offs, list) or len(offs) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) for o in offs)
                or not 0 <= offs[0] <= offs[1]):
            raise ValueError(f"{path}: {name} has invalid data_offsets {offs!r}")
        nbytes = math.prod(shape) * SAFETENSORS_DTYPES[info["dtype"]].itemsize
        if offs[1] - offs[0] != nbytes:
            raise ValueError(f"{path}: {name} is {info['dtype']} {shape} = {nbytes} bytes but "
                             f"data_offsets {offs} span {offs[1] - offs[0]}")
        if offs[1] > buffer_len:
            raise ValueError(f"{path} is truncated: {name} needs bytes up to {offs[1]} of the data "
                             f"buffer, which has {buffer_len}")
        spans.append((offs[0], offs[1], name))
    position = 0
    for begin, end, name in sorted(spans):
        if begin < position:
            raise ValueError(f"{path}: {name} overlaps the previous tensor (starts at {begin}, "
                             f"previous ends at {position})")
        if begin > position:
            raise ValueError(f"{path}: {position}..{begin} of the buffer belongs to no tensor "
                             f"(before {name})")
        position = end
    if position != buffer_len:
        raise ValueError(f"{path}: {buffer_len - position} trailing bytes after the last tensor")
    return sorted(spans)


# -- PyTorch .pt / .pth -------------------------------------------------------------------------
# torch storage type name -> NumPy dtype of its elements (little-endian, as torch writes them).
TORCH_STORAGE_DTYPES = {
    "DoubleStorage": np.dtype("<f8"), "FloatStorage": np.dtype("<f4"),
    "HalfStorage": np.dtype("<f2"), "BFloat16Storage": np.dtype("<u2"),
    "LongStorage": np.dtype("<i8"), "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"), "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"), "BoolStorage": np.dtype("?"),
}


# A tensor may view its storage with zero strides (torch's expand) and so hold more elements than
# were stored; beyond this many bytes such a tensor is refused rather than materialised.
MAX_EXPANDED_BYTES = 2 ** 30


class _StorageType:
    """What the pickle's ``torch.FloatStorage`` (etc.) resolves to: a name and a dtype, nothing
    callable."""

    __slots__ = ("name", "dtype")

    def __init__(self, name: str, dtype: np.dtype):
        self.name, self.dtype = name, dtype

    def __repr__(self):
        return f"torch.{self.name}"

    def __setstate__(self, state):
        raise pickle.UnpicklingError("storage type state (BUILD) is not allowed")


class _Storage:
    """A storage read from ``data/<key>``: its elements as a flat array, and whether a tensor
    already took it over (later tensors on the same storage then copy)."""

    __slots__ = ("array", "used")

    def __init__(self, array: np.ndarray):
        self.array = array
        self.used = False

    def __setstate__(self, state):
        raise pickle.UnpicklingError("storage state (BUILD) is not allowed")


class _Tensor:
    """A rebuilt tensor, kept distinct from every other unpickled value until the end, so that
    the result can be checked to be a dict of tensors and nothing else."""

    __slots__ = ("array",)

    def __init__(self, array: np.ndarray):
        self.array = array

    def __setstate__(self, state):
        raise pickle.UnpicklingError("tensor state (BUILD) is not allowed in a state-dict file")

    def __reduce__(self):
        raise TypeError("_Tensor is not picklable")


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle asked for something a state dict does not need; nothing was called."""


class _StateDictUnpickler(pickle.Unpickler):
    """An unpickler for ``torch.save(state_dict)`` that resolves only a fixed list of globals."""

    def __init__(self, file, path: Path, zf: zipfile.ZipFile, raw, prefix: str, byteorder: str):
        super().__init__(file)
        self._path, self._zf, self._raw = path, zf, raw
        self._prefix, self._byteorder = prefix, byteorder
        self._storages: dict[str, _Storage] = {}
        self._globals = {
            ("collections", "OrderedDict"): OrderedDict,
            ("torch._utils", "_rebuild_tensor_v2"): self._rebuild_tensor_v2,
            ("torch._utils", "_rebuild_tensor"): self._rebuild_tensor,
            ("torch._utils", "_rebuild_parameter"): self._rebuild_parameter,
            ("torch._utils", "_rebuild_parameter_with_state"): self._rebuild_parameter_with_state,
        }
        for name, dtype in TORCH_STORAGE_DTYPES.items():
            self._globals[("torch", name)] = _StorageType(name, dtype)

    def find_class(self, module, name):
        try:
            return self._globals[(module, name)]
        except (KeyError, TypeError):
            raise UnsafePickleError(
                f"refusing to unpickle {module}.{name} from {self._path}: a state-dict file only "
                f"needs tensors and OrderedDict, so this file is not a plain torch.save("
                f"model.state_dict()) (it may hold a whole model or run code)") from None

    def persistent_load(self, pid):
        if (not isinstance(pid, tuple) or len(pid) != 5 or pid[0] != "storage"
                or not isinstance(pid[1], _StorageType) or not isinstance(pid[2], str)
                or not isinstance(pid[4], int)):
            raise UnsafePickleError(f"{self._path}: unexpected persistent id {pid!r}")
        _, storage_type, key, _location, numel = pid
        if key in self._storages:
            return self._storages[key]
        member = f"{self._prefix}data/{key}"
        try:
            info = self._zf.getinfo(member)
        except KeyError:
            raise ValueError(f"{self._path} is corrupt: storage {member} is missing") from None
        dtype = storage_type.dtype.newbyteorder("<" if self._byteorder == "little" else ">")
        if info.file_size != numel * dtype.itemsize:
            raise ValueError(f"{self._path} is corrupt: {member} has {info.file_size} bytes, "
                             f"expected {numel} x {dtype.itemsize}")
        data = _read_member(self._zf, self._raw, info, dtype, numel, self._path)
        if storage_type.name == "BFloat16Storage":
            data = (data.astype(np.uint32) << 16).view(np.float32)
        data = data.astype(data.dtype.newbyteorder("="), copy=False)
        self._storages[key] = _Storage(data)
        return self._storages[key]

    # The rebuild functions: same arguments as torch._utils's, returning _Tensor.
    def _rebuild_tensor_v2(self, storage, storage_offset, size, stride, requires_grad=False,
                           backward_hooks=None, metadata=None):
        return self._rebuild_tensor(storage, storage_offset, size, stride)

    def _rebuild_tensor(self, storage, storage_offset, size, stride):
        if not isinstance(storage, _Storage):
            raise UnsafePickleError(f"{self._path}: tensor built from {type(storage).__name__}, "
                                    f"not a storage")
        ints = (isinstance(storage_offset, int) and isinstance(size, tuple)
                and isinstance(stride, tuple) and len(size) == len(stride)
                and all(isinstance(v, int) for v in size + stride))
        if not ints or storage_offset < 0 or any(v < 0 for v in size + stride):
            raise ValueError(f"{self._path} is corrupt: bad tensor geometry offset="
                             f"{storage_offset!r} size={size!r} stride={stride!r}")
        owner, storage = storage, storage.array
        if 0 in size:
            return _Tensor(np.zeros(size, dtype=storage.dtype))
        last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride))
        if last >= storage.size:
            raise ValueError(f"{self._path} is corrupt: a tensor of size {size} and stride "
                             f"{stride} at offset {storage_offset} reads element {last} of a "
                             f"storage of {storage.size}")
        numel = math.prod(size)
        if numel > storage.size and numel * storage.itemsize > MAX_EXPANDED_BYTES:
            # zero strides (torch's expand) can make a tiny storage look huge
            raise ValueError(f"{self._path}: a tensor of size {size} and stride {stride} would "
                             f"expand a storage of {storage.size} elements past "
                             f"{MAX_EXPANDED_BYTES} bytes; refusing (corrupt or hostile file)")
        c_strides = tuple(math.prod(size[i + 1:]) for i in range(len(size)))
        if (not owner.used and storage_offset == 0 and storage.size == numel
                and tuple(st for n, st in zip(size, stride) if n > 1)
                == tuple(st for n, st in zip(size, c_strides) if n > 1)
                and storage.flags.writeable):
            # The usual case: a tensor that is its whole storage, in C order. The storage array
            # (read for this file alone) becomes the tensor without another copy.
            owner.used = True
            return _Tensor(storage.reshape(size))
        owner.used = True
        view = np.lib.stride_tricks.as_strided(
            storage[storage_offset:], shape=size,
            strides=tuple(s * storage.itemsize for s in stride), writeable=False)
        return _Tensor(np.array(view, copy=True, order="C"))

    def _rebuild_parameter(self, data, requires_grad, backward_hooks):
        if not isinstance(data, _Tensor):
            raise UnsafePickleError(f"{self._path}: parameter built from "
                                    f"{type(data).__name__}, not a tensor")
        return data

    def _rebuild_parameter_with_state(self, data, requires_grad, backward_hooks, state):
        return self._rebuild_parameter(data, requires_grad, backward_hooks)


_ZIP_LOCAL_HEADER = struct.Struct("<4s22xHH")   # signature ... name length, extra length
_ZIP_LOCAL_SIGNATURE = b"PK\x03\x04"
# deflate's largest expansion, about 1032:1 (zlib.net, "zlib technical details", maximum
# compression factor); a member claiming more than that is corrupt or a zip bomb
DEFLATE_MAX_RATIO = 1032


def _read_member(zf: zipfile.ZipFile, raw, info: zipfile.ZipInfo, dtype: np.dtype, count: int,
                 path) -> np.ndarray:
    """A zip member's bytes as ``count`` elements of ``dtype``, CRC-checked.

    torch.save stores members uncompressed; those are read straight from the file into the
    array (no intermediate bytes object). Compressed members go through :mod:`zipfile`.
    """
    f = raw
    file_size = f.seek(0, os.SEEK_END)
    if info.compress_type != zipfile.ZIP_STORED:
        if info.file_size > DEFLATE_MAX_RATIO * info.compress_size + 1024:
            raise ValueError(f"{path}: {info.filename} claims {info.file_size} bytes from "
                             f"{info.compress_size} compressed; refusing (corrupt or a zip bomb)")
        return np.frombuffer(bytearray(zf.read(info.filename)), dtype=dtype, count=count)
    if info.header_offset + _ZIP_LOCAL_HEADER.size + info.file_size > file_size:
        raise ValueError(f"{path} is truncated or corrupt: {info.filename} claims "
                         f"{info.file_size} bytes, past the end of the file")
    out = np.empty(count, dtype=dtype)
    f.seek(info.header_offset)
    head = _read_exact(f, _ZIP_LOCAL_HEADER.size)
    if len(head) != _ZIP_LOCAL_HEADER.size:
        raise ValueError(f"{path} is truncated: local header of {info.filename} is cut off")
    signature, name_len, extra_len = _ZIP_LOCAL_HEADER.unpack(head)
    if signature != _ZIP_LOCAL_SIGNATURE:
        raise ValueError(f"{path} is corrupt: bad local header for {info.filename}")
    f.seek(info.header_offset + _ZIP_LOCAL_HEADER.size + name_len + extra_len)
    _readinto(f, out, path, info.filename)
    if zlib.crc32(memoryview(out.view(np.uint8))) != info.CRC:
        raise ValueError(f"{path} is corrupt: Bad CRC-32 for {info.filename}")
    return out


# -- PyTorch's legacy (pre-1.6) format ---------------------------------------------------------
#: ``torch.serialization.MAGIC_NUMBER`` and ``PROTOCOL_VERSION``: the first two pickles of a
#: legacy file.
TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
TORCH_LEGACY_PROTOCOL = 1001


class _NoGlobalsUnpickler(pickle.Unpickler):
    """For the legacy file's small pickles (numbers, a dict of strings, a list of keys): any
    global or persistent id is refused."""

    def __init__(self, file, path):
        super().__init__(file)
        self._path = path

    def find_class(self, module, name):
        raise UnsafePickleError(f"refusing to unpickle {module}.{name} from {self._path}: the "
                                f"header of a legacy PyTorch file holds only plain values")

    def persistent_load(self, pid):
        raise UnsafePickleError(f"{self._path}: unexpected persistent id {pid!r} in the header")


class _PendingTensor:
    """A tensor of a legacy file whose storage bytes come after the pickle: kept as its geometry
    until the storages have been read."""

    __slots__ = ("storage", "offset", "size", "stride")

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def __setstate__(self, state):
        raise pickle.UnpicklingError("tensor state (BUILD) is not allowed in a state-dict file")

    def __reduce__(self):
        raise TypeError("_PendingTensor is not picklable")


class _LegacyStateDictUnpickler(_StateDictUnpickler):
    """The state-dict pickle of a legacy file: the same globals; storages are placeholders
    (their bytes follow the pickle) and tensors wait for them (:class:`_PendingTensor`)."""

    def __init__(self, file, path: Path, byteorder: str):
        super().__init__(file, path, None, None, "", byteorder)
        self.pending: dict[str, tuple] = {}      # key -> (storage, dtype, numel)

    def persistent_load(self, pid):
        if (not isinstance(pid, tuple) or len(pid) != 6 or pid[0] != "storage"
                or not isinstance(pid[1], _StorageType) or not isinstance(pid[2], str)
                or not isinstance(pid[3], str) or not isinstance(pid[4], int) or pid[4] < 0):
            raise UnsafePickleError(f"{self._path}: unexpected persistent id {pid!r}")
        _, storage_type, key, _location, numel, view = pid
        if view is not None:
            raise ValueError(f"{self._path}: storage {key} is a view of another storage "
                             f"(view metadata {view!r}), which this loader does not read")
        if key in self.pending:
            storage, _, known, _ = self.pending[key]
            if known != numel:
                raise ValueError(f"{self._path} is corrupt: storage {key} is given {known} and "
                                 f"{numel} elements")
            return storage
        storage = _Storage(None)
        dtype = storage_type.dtype.newbyteorder("<" if self._byteorder == "little" else ">")
        self.pending[key] = (storage, dtype, numel, storage_type.name)
        return storage

    def _rebuild_tensor(self, storage, storage_offset, size, stride):
        if not isinstance(storage, _Storage):
            raise UnsafePickleError(f"{self._path}: tensor built from {type(storage).__name__}, "
                                    f"not a storage")
        return _PendingTensor(storage, storage_offset, size, stride)

    def _rebuild_parameter(self, data, requires_grad, backward_hooks):
        if not isinstance(data, _PendingTensor):
            raise UnsafePickleError(f"{self._path}: parameter built from "
                                    f"{type(data).__name__}, not a tensor")
        return data

    def read_storages(self, f, file_size: int) -> None:
        """Read the key list and every storage's bytes that follow the state-dict pickle."""
        keys = _NoGlobalsUnpickler(f, self._path).load()
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise ValueError(f"{self._path} is corrupt: the storage key list is "
                             f"{type(keys).__name__}, not a list of strings")
        if sorted(keys) != sorted(self.pending):
            raise ValueError(f"{self._path} is corrupt: the storage keys after the pickle "
                             f"{sorted(keys)} differ from those the tensors use "
                             f"{sorted(self.pending)}")
        count = np.dtype("<i8" if self._byteorder == "little" else ">i8")
        for key in keys:
            storage, dtype, numel, type_name = self.pending[key]
            head = _read_exact(f, 8)
            if len(head) != 8:
                raise ValueError(f"{self._path} is truncated: storage {key}'s length is cut off")
            stored = int(np.frombuffer(head, dtype=count)[0])
            if stored != numel:
                raise ValueError(f"{self._path} is corrupt: storage {key} has {stored} elements "
                                 f"on disk, {numel} in the pickle")
            if f.tell() + numel * dtype.itemsize > file_size:
                raise ValueError(f"{self._path} is truncated: storage {key} needs "
                                 f"{numel * dtype.itemsize} bytes, "
                                 f"{file_size - f.tell()} remain")
            data = np.empty(numel, dtype=dtype)
            _readinto(f, data, self._path, f"storage {key}")
            if type_name == "BFloat16Storage":
                data = (data.astype(np.uint32) << 16).view(np.float32)
            storage.array = data.astype(data.dtype.newbyteorder("="), copy=False)

    def finish(self, result):
        """Replace every pending tensor of the unpickled dict by its array (as :class:`_Tensor`)."""
        if not isinstance(result, dict):
            return result
        return OrderedDict(
            (name, _StateDictUnpickler._rebuild_tensor(self, v.storage, v.offset, v.size,
                                                       v.stride)
             if isinstance(v, _PendingTensor) else v)
            for name, v in result.items())


def _load_torch_legacy(path: Path):
    """The pickled object of a legacy ``torch.save`` file, tensors as :class:`_Tensor`."""
    size = path.stat().st_size
    with open(path, "rb", buffering=0) as raw:
        f = _Unbuffered(raw)
        magic = _NoGlobalsUnpickler(f, path).load()
        if magic != TORCH_LEGACY_MAGIC:
            raise ValueError(f"{path} is not a PyTorch file (a pickle, but without the magic "
                             f"number of torch.save's legacy format)")
        protocol = _NoGlobalsUnpickler(f, path).load()
        if protocol != TORCH_LEGACY_PROTOCOL:
            raise ValueError(f"{path}: legacy PyTorch protocol {protocol!r}, expected "
                             f"{TORCH_LEGACY_PROTOCOL}")
        info = _NoGlobalsUnpickler(f, path).load()
        if not isinstance(info, dict):
            raise ValueError(f"{path} is corrupt: its system information is not a dict")
        byteorder = "little" if info.get("little_endian", True) else "big"
        unpickler = _LegacyStateDictUnpickler(f, path, byteorder)
        result = unpickler.load()
        unpickler.read_storages(f, size)
        return unpickler.finish(result)


class _Unbuffered:
    """A raw file with ``read``/``readline``/``readinto``/``tell`` for pickle, without read-ahead:
    the storages start right where the pickle ends, so no byte may be consumed beyond it.

    (pickle's C unpickler reads from a file with ``peek`` in large chunks only when the file
    offers ``peek``; a raw ``FileIO`` has none, so the position after ``load`` is exact.)
    """

    def __init__(self, raw):
        self._raw = raw

    def read(self, n=-1):
        if n is None or n < 0:
            return self._raw.read()
        return _read_exact(self._raw, n)

    def readline(self):
        chunks = []
        while True:
            c = self._raw.read(1)
            if not c:
                break
            chunks.append(c)
            if c == b"\n":
                break
        return b"".join(chunks)

    def readinto(self, buffer):
        return self._raw.readinto(buffer)

    def tell(self):
        return self._raw.tell()


def load_torch(path) -> "OrderedDict[str, np.ndarray]":
    """Read a PyTorch state-dict file (``torch.save(model.state_dict(), path)``) without torch.

    Parameters
    ----------
    path : str or Path
        A ``.pt``/``.pth`` in PyTorch's zip format (the default since PyTorch 1.6) or in its
        legacy format (before 1.6; see the module notes). Tensors saved from a GPU are read to
        the CPU.

    Returns
    -------
    OrderedDict of str to ndarray
        In the file's order; float tensors keep their precision (float32 stays float32, bfloat16
        becomes float32), ``num_batches_tracked`` is int64.

    Raises
    ------
    UnsafePickleError
        The pickle names any global other than those a state dict needs (the global and the file
        are named); nothing from the file has been called.
    ValueError
        Not a PyTorch file (TorchScript archives and other files are named as such), a corrupt
        or truncated file, or a pickle that is not a dict of tensors.
    """
    path = _check_readable(path)
    legacy = False
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            head = f.read(2)
        if head[:1] != b"\x80":
            raise ValueError(f"{path} is not a PyTorch .pt/.pth file (not a zip archive or a "
                             f"legacy torch.save pickle; truncated or another format)")
        legacy = True
    try:
        if legacy:
            result = _load_torch_legacy(path)
        else:
            result = _load_torch_zip(path)
    except UnsafePickleError:
        raise
    except (zipfile.BadZipFile, EOFError, pickle.UnpicklingError, struct.error) as exc:
        raise ValueError(f"{path} is a corrupt or truncated PyTorch file: {exc}") from None
    except ValueError as exc:
        if str(path) in str(exc):
            raise
        raise ValueError(f"{path} is a corrupt PyTorch file: {exc}") from None
    except (TypeError, AttributeError, IndexError, KeyError, RecursionError) as exc:
        # e.g. a pickle calling a storage type, or building an attribute on a plain list
        raise ValueError(f"{path} is not a plain PyTorch state dict: {exc}") from None
    if not isinstance(result, dict):
        raise ValueError(f"{path} holds a {type(result).__name__}, not a state dict")
    out = OrderedDict()
    for name, value in result.items():
        if not isinstance(value, _Tensor):
            raise ValueError(f"{path}: entry {name!r} is a {type(value).__name__}, not a tensor "
                             f"(this loader reads plain state dicts only)")
        out[str(name)] = value.array
    return out


def _load_torch_zip(path: Path):
    """The pickled object of a zip-format ``torch.save`` file, tensors as :class:`_Tensor`."""
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            if any(n.endswith("/constants.pkl") for n in names):
                raise ValueError(f"{path} is a TorchScript archive (torch.jit.save), not a "
                                 f"state dict")
            raise ValueError(f"{path} is a zip but not a PyTorch file (no single "
                             f"<name>/data.pkl member)")
        prefix = pickles[0][: -len("data.pkl")]
        byteorder = "little"
        if prefix + "byteorder" in names:
            byteorder = zf.read(prefix + "byteorder").decode("ascii", "replace").strip()
            if byteorder not in ("little", "big"):
                raise ValueError(f"{path}: unknown byteorder {byteorder!r}")
        # storages are read through a second, unbuffered handle (see _readinto)
        with zf.open(pickles[0]) as f, open(path, "rb", buffering=0) as raw:
            return _StateDictUnpickler(f, path, zf, raw, prefix, byteorder).load()


# -- by extension -------------------------------------------------------------------------------
def save_weights(path, state_dict, metadata=None) -> None:
    """Save by extension: ``.safetensors`` via :func:`save_safetensors`, ``.npz`` via
    :func:`save_npz` (which cannot hold ``metadata``).

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> path = os.path.join(tempfile.mkdtemp(), "model.safetensors")
    >>> save_weights(path, {"fc.weight": np.eye(2, dtype=np.float32)}, {"arch": "demo"})
    >>> load_weights(path)["fc.weight"]
    array([[1., 0.],
           [0., 1.]], dtype=float32)
    """
    suffix = Path(path).suffix.lower()
    if suffix == ".safetensors":
        save_safetensors(path, state_dict, metadata)
    elif suffix == ".npz":
        if metadata is not None:
            raise ValueError("metadata can only be stored in .safetensors files")
        save_npz(path, state_dict)
    else:
        raise ValueError(f"cannot save weights as {suffix or 'a file with no extension'!r}: use "
                         f".npz or .safetensors (.pt/.pth are read-only)")


def load_weights(path) -> "OrderedDict[str, np.ndarray]":
    """Load by extension: ``.npz``, ``.safetensors``, or ``.pt``/``.pth`` (PyTorch, no torch)."""
    suffix = Path(path).suffix.lower()
    loaders = {".npz": load_npz, ".safetensors": load_safetensors, ".pt": load_torch,
               ".pth": load_torch}
    if suffix not in loaders:
        raise ValueError(f"cannot tell the weights format of {path}: expected .npz, "
                         f".safetensors, .pt or .pth")
    return loaders[suffix](path)
