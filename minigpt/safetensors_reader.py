"""Reading a safetensors file with NumPy alone, bfloat16 included, checking it as we go.

A safetensors file is three parts, nothing more:

    8 bytes      N, the length of the header (unsigned, little-endian)
    N bytes      a JSON object: for each tensor its dtype, shape and byte range,
                     {"wte.weight": {"dtype": "F32", "shape": [50257, 768],
                                     "data_offsets": [0, 154389504]}, ...}
                 plus an optional "__metadata__": {"format": "pt"} of strings
    the data     every tensor's bytes, little-endian, row-major; the offsets above
                 count from the first byte after the header

Why not `safetensors.numpy`? NumPy has no bfloat16 type, so safetensors' NumPy API cannot
hand out a BF16 tensor at all. bfloat16 is simply the top 16 bits of a float32 (same sign
and 8-bit exponent, 7 of the 23 mantissa bits), so reading its bits as uint16 and shifting
them into the top half of a uint32 gives the float32 exactly. Reading the header ourselves
also lets a loader check every name, shape, dtype and byte range before it reads (or
allocates) anything, and read each tensor straight into the buffer it belongs in.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Bytes per element of every dtype the format defines.
ITEMSIZE = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2,
            "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}
# The floating-point ones NumPy can hold (BF16 arrives as float32, see read_tensor).
FLOAT_DTYPES = {"F16": np.dtype("<f2"), "F32": np.dtype("<f4"), "F64": np.dtype("<f8")}
MAX_HEADER = 100 << 20  # the format's own limit on the header's size


class SafetensorsError(ValueError):
    """A safetensors file that is truncated, corrupt, or holds something it should not."""


@dataclass(frozen=True)
class TensorEntry:
    """Where one tensor's bytes are in the file, and how to read them."""

    dtype: str  # safetensors' name: "F32", "F16", "BF16", ...
    shape: tuple[int, ...]
    start: int  # absolute byte offsets in the file
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.start


def read_header(path) -> tuple[dict[str, TensorEntry], dict[str, str]]:
    """({name: TensorEntry}, metadata) of the file, after checking that the header is valid
    JSON of the right form and that every tensor's bytes lie inside the file."""
    path = Path(path)
    file_size = path.stat().st_size
    with open(path, "rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            raise SafetensorsError(f"{path} is truncated: {file_size} bytes, too short for a safetensors header")
        (header_size,) = struct.unpack("<Q", prefix)  # unsigned 64-bit, little-endian
        if header_size > MAX_HEADER or 8 + header_size > file_size:
            raise SafetensorsError(f"{path} is truncated or not a safetensors file: its first 8 bytes announce "
                                   f"a {header_size}-byte header, but the file has {file_size} bytes")
        raw = f.read(header_size)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SafetensorsError(f"{path} is corrupt: its header is not valid JSON ({err})") from None
    if not isinstance(header, dict):
        raise SafetensorsError(f"{path} is corrupt: its header is not a JSON object")

    metadata = header.pop("__metadata__", None) or {}
    data_start = 8 + header_size
    entries = {name: _entry(path, name, info, data_start, file_size) for name, info in header.items()}
    return entries, metadata


def _entry(path: Path, name: str, info, data_start: int, file_size: int) -> TensorEntry:
    where = f"{path}: tensor {name!r}"
    if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= set(info):
        raise SafetensorsError(f"{where} is corrupt: needs dtype, shape and data_offsets, got {info!r}")
    dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if dtype not in ITEMSIZE:
        raise SafetensorsError(f"{where} has the unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise SafetensorsError(f"{where} is corrupt: shape {shape!r} is not a list of sizes")
    if (not isinstance(offsets, list) or len(offsets) != 2 or not all(isinstance(o, int) for o in offsets)
            or not 0 <= offsets[0] <= offsets[1]):
        raise SafetensorsError(f"{where} is corrupt: data_offsets {offsets!r} are not [begin, end]")
    start, end = data_start + offsets[0], data_start + offsets[1]
    if end - start != math.prod(shape) * ITEMSIZE[dtype]:
        raise SafetensorsError(f"{where} is corrupt: {end - start} bytes for shape {shape} of {dtype}")
    if end > file_size:
        raise SafetensorsError(f"{path} is truncated: tensor {name!r} ends at byte {end}, "
                               f"but the file has only {file_size} bytes")
    return TensorEntry(dtype, tuple(shape), start, end)


def read_tensor(f, entry: TensorEntry, out: np.ndarray | None = None) -> np.ndarray:
    """Read one floating-point tensor from the open binary file f.

    Into `out` (a C-contiguous float array of the entry's shape) when given, converting to
    its dtype; otherwise into a new float32 array (F64 stays float64). F32 into a float32
    `out` goes straight from the file into out's memory, with no temporary copy."""
    if entry.dtype not in FLOAT_DTYPES and entry.dtype != "BF16":
        raise SafetensorsError(f"cannot read a tensor of dtype {entry.dtype} as floats")
    if out is None:
        out = np.empty(entry.shape, dtype=np.float64 if entry.dtype == "F64" else np.float32)
    if out.shape != entry.shape or not out.flags.c_contiguous:
        raise ValueError(f"out must be C-contiguous with shape {entry.shape}, got {out.shape}")

    stored = np.dtype("<u2") if entry.dtype == "BF16" else FLOAT_DTYPES[entry.dtype]
    if stored == out.dtype and out.dtype.isnative:
        _read_exactly(f, entry, out)  # the bytes are already what out holds
        return out
    raw = np.empty(entry.shape, dtype=stored)
    _read_exactly(f, entry, raw)
    if entry.dtype == "BF16":
        # bfloat16 bits are the top half of the float32 with the same value
        bits = raw.astype(np.uint32)  # (..., ) 4 bytes each
        bits <<= 16
        raw = bits.view(np.float32)
    np.copyto(out, raw, casting="unsafe")  # float16 -> float32 is exact; float32 -> float64 too
    return out


def _read_exactly(f, entry: TensorEntry, array: np.ndarray) -> None:
    view = memoryview(array).cast("B")
    f.seek(entry.start)
    done = 0
    while done < entry.nbytes:
        n = f.readinto(view[done:])
        if not n:  # the file shrank since its header was checked
            raise SafetensorsError(f"{getattr(f, 'name', 'file')} is truncated: a tensor stops at byte "
                                   f"{entry.start + done}, expected {entry.end}")
        done += n


def read_bytes(f, entry: TensorEntry, chunk: int = 1 << 24):
    """The raw bytes of a tensor, in chunks (to compare two tensors without loading either)."""
    f.seek(entry.start)
    left = entry.nbytes
    while left:
        block = f.read(min(chunk, left))
        if not block:
            raise SafetensorsError(f"{getattr(f, 'name', 'file')} is truncated at byte {entry.end - left}")
        left -= len(block)
        yield block
