"""Independent safetensors reader and writer (struct + json + NumPy only).

File layout (the safetensors format):
    u64 little-endian N | N bytes of UTF-8 JSON header | data bytes
The header maps tensor name -> {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to
the start of the data section) plus an optional "__metadata__" {str: str}. The writer pads the
header with spaces so that the data section starts at a multiple of 8.

Scalar formats (docs/model.md §6):
  * F8_E4M3 (float8_e4m3fn): 1 sign, 4 exponent bits (bias 7), 3 mantissa bits, subnormals,
    no infinities, 0x7F/0xFF are NaN, max finite ±448. Decoded through a 256-entry table built
    from that definition; encoded with round-to-nearest-even and saturation to ±448.
  * BF16: the top 16 bits of an IEEE f32 (decode: u16 << 16); encode rounds to nearest even.
"""

import json
import os
import struct

import numpy as np

# safetensors dtype name -> (NumPy storage dtype, bytes per element). Raw storage only: F8_E4M3
# stays uint8 codes and BF16 stays uint16 bits until to_f32() decodes them.
DTYPES = {
    "BOOL": (np.dtype(np.bool_), 1),
    "U8": (np.dtype("<u1"), 1),
    "I8": (np.dtype("<i1"), 1),
    "I16": (np.dtype("<i2"), 2),
    "U16": (np.dtype("<u2"), 2),
    "I32": (np.dtype("<i4"), 4),
    "U32": (np.dtype("<u4"), 4),
    "I64": (np.dtype("<i8"), 8),
    "U64": (np.dtype("<u8"), 8),
    "F8_E4M3": (np.dtype("<u1"), 1),
    "F8_E5M2": (np.dtype("<u1"), 1),
    "F16": (np.dtype("<f2"), 2),
    "BF16": (np.dtype("<u2"), 2),
    "F32": (np.dtype("<f4"), 4),
    "F64": (np.dtype("<f8"), 8),
}


# ---------------------------------------------------------------------------------------------
# e4m3fn
# ---------------------------------------------------------------------------------------------
def _e4m3_value(code):
    """The exact value of one e4m3fn code, from the bit-field definition."""
    sign = -1.0 if code & 0x80 else 1.0
    exponent = (code >> 3) & 0xF
    mantissa = code & 0x7
    if exponent == 0xF and mantissa == 0x7:
        return float("nan")  # 0x7F / 0xFF: the only NaNs; no infinities
    if exponent == 0:
        return sign * (mantissa / 8.0) * 2.0 ** (1 - 7)  # subnormal: 0.m · 2^-6
    return sign * (1.0 + mantissa / 8.0) * 2.0 ** (exponent - 7)


E4M3_TABLE = np.array([_e4m3_value(c) for c in range(256)], dtype=np.float32)  # [256]
E4M3_MAX = 448.0
# Non-negative finite codes 0x00..0x7E in increasing value order (code order == value order).
_E4M3_POS = E4M3_TABLE[:0x7F].astype(np.float64)  # [127]


def e4m3_decode(codes):
    """uint8 codes (any shape) -> float32 values."""
    return E4M3_TABLE[np.asarray(codes, dtype=np.uint8)]


def e4m3_encode(x):
    """float -> e4m3fn codes: round to nearest, ties to the even code (= even mantissa),
    saturating to ±448 (the fn format has no infinity); NaN -> 0x7F."""
    x = np.asarray(x, dtype=np.float64)
    mag = np.minimum(np.abs(x), E4M3_MAX)
    hi = np.clip(np.searchsorted(_E4M3_POS, mag, side="left"), 0, 0x7E)  # first value >= mag
    lo = np.maximum(hi - 1, 0)
    d_lo = mag - _E4M3_POS[lo]
    d_hi = _E4M3_POS[hi] - mag
    pick_hi = (d_hi < d_lo) | ((d_hi == d_lo) & (hi % 2 == 0))
    code = np.where(pick_hi, hi, lo).astype(np.uint8)
    code = np.where(np.signbit(x), code | 0x80, code).astype(np.uint8)
    return np.where(np.isnan(x), np.uint8(0x7F), code).astype(np.uint8)


def e4m3_round(x):
    """Round float values to the nearest e4m3 value (RNE, saturating), as float32."""
    return e4m3_decode(e4m3_encode(x))


# ---------------------------------------------------------------------------------------------
# bf16
# ---------------------------------------------------------------------------------------------
def bf16_decode(bits):
    """uint16 bf16 bits -> float32 (exact)."""
    return (np.asarray(bits, dtype=np.uint32) << 16).view(np.float32)


def bf16_encode(x):
    """float32 -> bf16 bits, round to nearest even; NaN stays a (quiet) NaN."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(np.asarray(x, dtype=np.float32))
    return np.where(nan, ((u >> 16) | 0x40).astype(np.uint16), rounded).astype(np.uint16)


def bf16_round(x):
    """Round float32 values to bf16 precision (RNE), returned as float32."""
    return bf16_decode(bf16_encode(x))


def to_f32(raw, dtype):
    """Raw stored array (as returned by SafetensorsFile.raw) -> float32 values."""
    if dtype == "F8_E4M3":
        return e4m3_decode(raw)
    if dtype == "BF16":
        return bf16_decode(raw)
    if dtype in ("F16", "F32", "F64"):
        return np.asarray(raw, dtype=np.float32)
    raise ValueError(f"to_f32: unsupported dtype {dtype}")


# ---------------------------------------------------------------------------------------------
# Reader
# ---------------------------------------------------------------------------------------------
class SafetensorsFile:
    """One .safetensors file. `raw(name)` is a read-only memory-mapped view in storage dtype."""

    def __init__(self, path):
        self.path = path
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) != 8:
                raise ValueError(f"{path}: shorter than the 8-byte header length")
            (n,) = struct.unpack("<Q", head)
            if n > size - 8:
                raise ValueError(f"{path}: header length {n} exceeds the file size {size}")
            header = json.loads(f.read(n).decode("utf-8"))
        self.data_start = 8 + n
        self.metadata = header.pop("__metadata__", None)
        self.header = header  # name -> {"dtype", "shape", "data_offsets"}
        self._map = np.memmap(path, dtype=np.uint8, mode="r") if size > 0 else None
        for name, info in header.items():
            begin, end = info["data_offsets"]
            want = int(np.prod(info["shape"], dtype=np.int64)) * DTYPES[info["dtype"]][1]
            if end - begin != want or self.data_start + end > size:
                raise ValueError(f"{path}: tensor {name} has bad data_offsets {begin},{end}")

    def names(self):
        return list(self.header)

    def info(self, name):
        return self.header[name]

    def raw_bytes(self, name):
        begin, end = self.header[name]["data_offsets"]
        return self._map[self.data_start + begin:self.data_start + end]

    def raw(self, name):
        info = self.header[name]
        np_dtype = DTYPES[info["dtype"]][0]
        return self.raw_bytes(name).view(np_dtype).reshape(info["shape"])

    def f32(self, name):
        return to_f32(self.raw(name), self.header[name]["dtype"])


class CheckpointFiles:
    """A checkpoint folder: model.safetensors.index.json (weight_map: name -> shard file) or,
    without an index, every *.safetensors file in the folder."""

    def __init__(self, folder):
        self.folder = folder
        index_path = os.path.join(folder, "model.safetensors.index.json")
        self.where = {}  # tensor name -> SafetensorsFile
        if os.path.exists(index_path):
            with open(index_path) as f:
                weight_map = json.load(f)["weight_map"]
            shards = {s: SafetensorsFile(os.path.join(folder, s)) for s in sorted(set(weight_map.values()))}
            for name, shard in weight_map.items():
                if name not in shards[shard].header:
                    raise ValueError(f"{index_path}: tensor {name} is not in shard {shard}")
                self.where[name] = shards[shard]
        else:
            for fn in sorted(os.listdir(folder)):
                if fn.endswith(".safetensors"):
                    st = SafetensorsFile(os.path.join(folder, fn))
                    for name in st.names():
                        if name in self.where:
                            raise ValueError(f"{folder}: tensor {name} is in two shards")
                        self.where[name] = st

    def __contains__(self, name):
        return name in self.where

    def names(self):
        return sorted(self.where)

    def dtype(self, name):
        return self.where[name].info(name)["dtype"]

    def shape(self, name):
        return list(self.where[name].info(name)["shape"])

    def raw(self, name):
        return self.where[name].raw(name)

    def f32(self, name):
        return self.where[name].f32(name)


# ---------------------------------------------------------------------------------------------
# Writer
# ---------------------------------------------------------------------------------------------
def write_safetensors(path, tensors, metadata=None):
    """tensors: ordered dict name -> (dtype name, shape, raw NumPy array in storage dtype).
    Data is laid out in the given order; the header is space-padded to a multiple of 8."""
    header = {}
    if metadata is not None:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs = []
    offset = 0
    for name, (dtype, shape, array) in tensors.items():
        np_dtype, size = DTYPES[dtype]
        blob = np.ascontiguousarray(array, dtype=np_dtype)  # written as is, without a bytes copy
        if blob.nbytes != int(np.prod(shape, dtype=np.int64)) * size:
            raise ValueError(f"write_safetensors: {name}: {blob.nbytes} bytes for shape {shape}")
        header[name] = {"dtype": dtype, "shape": [int(s) for s in shape],
                        "data_offsets": [offset, offset + blob.nbytes]}
        blobs.append(blob)
        offset += blob.nbytes
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((-(8 + len(text))) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(memoryview(blob.reshape(-1)).cast("B"))
