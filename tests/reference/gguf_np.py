"""GGUF files in NumPy: reader, writer and block decoders, written from the format's
specification (ggml's docs/gguf.md) and the block layouts restated in docs/gguf.md of this
repository. struct + numpy only; independent of the C++ reader (src/format/gguf.cc).

Layout: u32 magic "GGUF" | u32 version (2 or 3) | u64 tensor_count | u64 kv_count |
kv_count x (string key, u32 value type, value) | tensor_count x (string name, u32 n_dims,
u64 dims[n_dims], u32 ggml type, u64 offset) | zero padding to the alignment | data.
A string is u64 length + UTF-8 bytes; an array is u32 element type + u64 count + elements.
Tensor offsets are relative to the data section and multiples of `general.alignment` (u32,
default 32). dims[0] is the contiguous extent (NumPy shape = reversed dims).
"""

import struct

import numpy as np

MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32

# Metadata value types.
UINT8, INT8, UINT16, INT16, UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY, UINT64, INT64, FLOAT64 = range(13)
TYPE_NAMES = ["UINT8", "INT8", "UINT16", "INT16", "UINT32", "INT32", "FLOAT32", "BOOL", "STRING",
              "ARRAY", "UINT64", "INT64", "FLOAT64"]
SCALAR_FMT = {UINT8: "<B", INT8: "<b", UINT16: "<H", INT16: "<h", UINT32: "<I", INT32: "<i",
              FLOAT32: "<f", BOOL: "<?", UINT64: "<Q", INT64: "<q", FLOAT64: "<d"}

# ggml tensor types this module decodes: id -> (name, elements per block, bytes per block).
F32, F16, Q8_0, Q4_K, Q5_K, Q6_K, BF16 = 0, 1, 8, 12, 13, 14, 30
Q4_0, Q4_1, Q5_0, Q5_1 = 2, 3, 6, 7
Q2_K, Q3_K = 10, 11
IQ4_NL, IQ4_XS = 20, 23
GGML_TYPES = {F32: ("F32", 1, 4), F16: ("F16", 1, 2), Q8_0: ("Q8_0", 32, 34),
              Q4_0: ("Q4_0", 32, 18), Q4_1: ("Q4_1", 32, 20), Q5_0: ("Q5_0", 32, 22),
              Q5_1: ("Q5_1", 32, 24),
              Q4_K: ("Q4_K", 256, 144), Q5_K: ("Q5_K", 256, 176), Q6_K: ("Q6_K", 256, 210),
              Q2_K: ("Q2_K", 256, 84), Q3_K: ("Q3_K", 256, 110),
              IQ4_NL: ("IQ4_NL", 32, 18), IQ4_XS: ("IQ4_XS", 256, 136),
              BF16: ("BF16", 1, 2)}


class Value:
    """A typed metadata value. For ARRAY, `elem` is the element type and `value` a list of
    plain Python values (or of `Value`s of type ARRAY for nested arrays)."""

    def __init__(self, type_, value, elem=None):
        self.type, self.value, self.elem = type_, value, elem

    def __repr__(self):
        return f"Value({TYPE_NAMES[self.type]}, {self.value!r}, elem={self.elem})"


# ---------------------------------------------------------------- writer

def _enc_string(s):
    b = s.encode("utf-8") if isinstance(s, str) else bytes(s)
    return struct.pack("<Q", len(b)) + b


def _enc_payload(type_, value, elem=None):
    if type_ == STRING:
        return _enc_string(value)
    if type_ == ARRAY:
        out = struct.pack("<IQ", elem, len(value))
        for item in value:
            if elem == ARRAY:
                out += _enc_payload(ARRAY, item.value, item.elem)
            else:
                out += _enc_payload(elem, item)
        return out
    return struct.pack(SCALAR_FMT[type_], value)


def encode_header(metadata, tensors, version=3):
    """Bytes of the header, KVs and tensor infos (no padding). `metadata`: list of
    (key, Value); `tensors`: list of dicts with name, type, dims, offset."""
    out = MAGIC + struct.pack("<IQQ", version, len(tensors), len(metadata))
    for key, v in metadata:
        out += _enc_string(key) + struct.pack("<I", v.type) + _enc_payload(v.type, v.value, v.elem)
    for t in tensors:
        out += _enc_string(t["name"]) + struct.pack("<I", len(t["dims"]))
        out += struct.pack(f"<{len(t['dims'])}Q", *t["dims"])
        out += struct.pack("<IQ", t["type"], t["offset"])
    return out


def tensor_nbytes(type_, dims):
    _, blk, size = GGML_TYPES[type_]
    n = int(np.prod(dims, dtype=np.int64))
    assert dims[0] % blk == 0
    return n // blk * size


def write_gguf(path, metadata, tensors, version=3):
    """`tensors`: list of (name, ggml type, dims, raw bytes). Data laid out in order, each
    tensor at the next multiple of the alignment (from `general.alignment` if present), and the
    last one padded to it too, as ggml writes: ggml's reader reads the data section as the sum of
    the padded sizes and refuses a file that ends sooner."""
    align = DEFAULT_ALIGNMENT
    for key, v in metadata:
        if key == "general.alignment":
            align = v.value
    infos, offset = [], 0
    for name, type_, dims, raw in tensors:
        assert len(raw) == tensor_nbytes(type_, dims), name
        infos.append({"name": name, "type": type_, "dims": list(dims), "offset": offset})
        offset = -(-(offset + len(raw)) // align) * align
    head = encode_header(metadata, infos, version)
    data_start = -(-len(head) // align) * align
    with open(path, "wb") as f:
        f.write(head + b"\0" * (data_start - len(head)))
        for info, (_, _, _, raw) in zip(infos, tensors):
            f.write(b"\0" * (data_start + info["offset"] - f.tell()))
            f.write(raw)
        f.write(b"\0" * (data_start + offset - f.tell()))
    return infos


# ---------------------------------------------------------------- reader

class _Cursor:
    def __init__(self, buf):
        # A memoryview: slicing a NumPy memmap makes a new memmap object per string, which took
        # seconds for a 129K-token vocabulary.
        self.buf, self.pos = memoryview(buf), 0

    def take(self, n):
        if self.pos + n > len(self.buf):
            raise ValueError(f"truncated at byte {self.pos}")
        b = self.buf[self.pos:self.pos + n]
        self.pos += n
        return b

    def unpack(self, fmt):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self):
        return bytes(self.take(self.unpack("<Q"))).decode("utf-8")

    def value(self, type_):
        if type_ == STRING:
            return Value(STRING, self.string())
        if type_ == ARRAY:
            elem, n = self.unpack("<I"), self.unpack("<Q")
            if elem == ARRAY:
                return Value(ARRAY, [self.value(ARRAY) for _ in range(n)], elem)
            if elem == STRING:
                return Value(ARRAY, [self.string() for _ in range(n)], elem)
            fmt = SCALAR_FMT[elem]
            items = struct.unpack(f"<{n}{fmt[1]}", self.take(n * struct.calcsize(fmt)))
            return Value(ARRAY, list(items), elem)
        return Value(type_, self.unpack(SCALAR_FMT[type_]))


def read_gguf(path):
    """{"version", "alignment", "data_offset", "metadata": [(key, Value)], "tensors": [dict
    with name, type, dims, offset, nbytes], "data": memory map of the file}."""
    buf = np.memmap(path, dtype=np.uint8, mode="r")
    c = _Cursor(buf)
    if bytes(c.take(4)) != MAGIC:
        raise ValueError("bad magic")
    version = c.unpack("<I")
    if version not in (2, 3):
        raise ValueError(f"unsupported version {version}")
    n_tensors, n_kv = c.unpack("<Q"), c.unpack("<Q")
    metadata = []
    for _ in range(n_kv):
        key = c.string()
        metadata.append((key, c.value(c.unpack("<I"))))
    align = dict(metadata).get("general.alignment", Value(UINT32, DEFAULT_ALIGNMENT)).value
    tensors = []
    for _ in range(n_tensors):
        name = c.string()
        n_dims = c.unpack("<I")
        dims = [c.unpack("<Q") for _ in range(n_dims)]
        type_, offset = c.unpack("<I"), c.unpack("<Q")
        tensors.append({"name": name, "type": type_, "dims": dims, "offset": offset,
                        "nbytes": tensor_nbytes(type_, dims)})
    data_offset = -(-c.pos // align) * align
    return {"version": version, "alignment": align, "data_offset": data_offset,
            "metadata": metadata, "tensors": tensors, "data": buf}


def tensor_raw(gguf, t):
    start = gguf["data_offset"] + t["offset"]
    return np.asarray(gguf["data"][start:start + t["nbytes"]])


# ---------------------------------------------------------------- block decoders
# Vectorised over blocks. Every product/difference is a separate f32 operation, as in ggml's
# reference decoders, so results are bit-exact.

def _f16(u8pair):
    return np.ascontiguousarray(u8pair).view("<f2").astype(np.float32)


def _k4_scales(s):
    """s: [nb, 12] u8 -> (sc, m), each [nb, 8] f32."""
    sc = np.empty((s.shape[0], 8), np.uint8)
    m = np.empty((s.shape[0], 8), np.uint8)
    sc[:, :4], m[:, :4] = s[:, 0:4] & 63, s[:, 4:8] & 63
    sc[:, 4:] = (s[:, 8:12] & 15) | ((s[:, 0:4] >> 6) << 4)
    m[:, 4:] = (s[:, 8:12] >> 4) | ((s[:, 4:8] >> 6) << 4)
    return sc.astype(np.float32), m.astype(np.float32)


def _decode_q8_0(b):
    d = _f16(b[:, 0:2])                                   # [nb, 1]
    q = b[:, 2:34].view(np.int8).astype(np.float32)       # [nb, 32]
    return q * d


def _decode_legacy(b, has_min, has_high):
    """Q4_0/Q4_1/Q5_0/Q5_1: [f16 d][f16 m][u32 qh][qs 16]; element i < 16 is the low nibble of
    qs[i], i + 16 the high one; bit i of qh adds 16; x = (q - 8|16) d, or q d + m."""
    d = _f16(b[:, 0:2])                                   # [nb, 1]
    at = 4 if has_min else 2
    q = np.concatenate([b[:, -16:] & 15, b[:, -16:] >> 4], axis=1).astype(np.int32)  # [nb, 32]
    if has_high:
        qh = b[:, at:at + 4].copy().view("<u4")           # [nb, 1]
        q += ((qh >> np.arange(32, dtype=np.uint32)[None, :]) & 1).astype(np.int32) * 16
    if has_min:
        return q.astype(np.float32) * d + _f16(b[:, 2:4])
    return (q - (16 if has_high else 8)).astype(np.float32) * d


def _decode_k45(b, qh):
    nb = b.shape[0]
    d, dmin = _f16(b[:, 0:2]), _f16(b[:, 2:4])            # [nb, 1]
    sc, m = _k4_scales(b[:, 4:16])                        # [nb, 8]
    qs = b[:, -128:].reshape(nb, 4, 32)
    q = np.stack([qs & 15, qs >> 4], axis=2).reshape(nb, 8, 32).astype(np.int32)
    if qh is not None:                                    # bit j of qh[l] is bit 4 of sub-block j
        q += ((qh[:, None, :] >> np.arange(8, dtype=np.uint8)[None, :, None]) & 1).astype(np.int32) * 16
    d_j, m_j = d * sc, dmin * m                           # [nb, 8] f32
    return d_j[:, :, None] * q.astype(np.float32) - m_j[:, :, None]


def _decode_q6_k(b):
    nb = b.shape[0]
    ql = b[:, 0:128].reshape(nb, 2, 2, 32)                # [nb, half, A|B, l]
    qh = b[:, 128:192].reshape(nb, 2, 32)
    sc = b[:, 192:208].view(np.int8).reshape(nb, 2, 4, 2).astype(np.float32)
    d = _f16(b[:, 208:210]).reshape(nb, 1, 1, 1)
    low = np.stack([ql[:, :, 0] & 15, ql[:, :, 1] & 15, ql[:, :, 0] >> 4, ql[:, :, 1] >> 4], axis=2)
    high = np.stack([(qh >> (2 * k)) & 3 for k in range(4)], axis=2)
    q = (low.astype(np.int32) | (high.astype(np.int32) << 4)) - 32   # [nb, 2, 4, 32]
    scale = np.repeat(d * sc, 16, axis=3)                 # [nb, 2, 4, 32]
    return scale * q.astype(np.float32)


def _two_bit_planes(qs):
    """qs: [nb, 64] u8 -> [nb, 2, 4, 32]: half n, step j, element l = (qs[32n + l] >> 2j) & 3."""
    q = qs.reshape(qs.shape[0], 2, 1, 32)
    return (q >> (2 * np.arange(4, dtype=np.uint8))[None, None, :, None]) & 3


def _decode_q2_k(b):
    """Q2_K: scales[16] | qs[64] | f16 d | f16 dmin; group g of 16 elements: (d * (s & 15)) q -
    dmin * (s >> 4)."""
    nb = b.shape[0]
    d, dmin = _f16(b[:, 80:82]), _f16(b[:, 82:84])                    # [nb, 1]
    s = b[:, 0:16]
    dl = np.repeat(d * (s & 15).astype(np.float32), 16, axis=1)      # [nb, 256]
    ml = np.repeat(dmin * (s >> 4).astype(np.float32), 16, axis=1)
    q = _two_bit_planes(b[:, 16:80]).reshape(nb, 256).astype(np.float32)
    return dl * q - ml


def _q3_scales(p):
    """p: [nb, 12] u8 -> the 16 signed 6-bit group scales [nb, 16] (stored + 32)."""
    low = np.concatenate([p[:, 0:8] & 15, p[:, 0:8] >> 4], axis=1).astype(np.int32)
    g = np.arange(16)
    high = (p[:, 8 + g % 4] >> (2 * (g // 4)).astype(np.uint8)) & 3
    return (low | (high.astype(np.int32) << 4)) - 32


def _decode_q3_k(b):
    """Q3_K: hmask[32] | qs[64] | scales[12] | f16 d; q = 2 low bits - 4 unless the hmask bit
    4n + j of element l is set; x = (d * s_g) q."""
    nb = b.shape[0]
    d = _f16(b[:, 108:110])                                           # [nb, 1]
    low = _two_bit_planes(b[:, 32:96]).astype(np.int32)              # [nb, 2, 4, 32]
    bit = (b[:, None, None, 0:32] >> np.arange(8, dtype=np.uint8).reshape(1, 2, 4, 1)) & 1
    q = (low - np.where(bit == 1, 0, 4)).reshape(nb, 256).astype(np.float32)
    dl = np.repeat(d * _q3_scales(b[:, 96:108]).astype(np.float32), 16, axis=1)
    return dl * q


# The 16 levels of the IQ4 types: a 4-bit code indexes this non-linear int8 table (denser near 0,
# where most weights are) instead of being a linear level.
IQ4_LEVELS = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113],
                      np.int8)


def _iq4_levels(qs):
    """qs: [..., 16] u8 -> [..., 32] f32 table levels: element i < 16 from the low nibble of
    qs[i], element i + 16 from its high nibble."""
    codes = np.concatenate([qs & 15, qs >> 4], axis=-1)
    return IQ4_LEVELS[codes].astype(np.float32)


def _decode_iq4_nl(b):
    """IQ4_NL: f16 d | qs[16]; x = d * level."""
    return _f16(b[:, 0:2]) * _iq4_levels(b[:, 2:18])     # [nb, 1] * [nb, 32]


def _decode_iq4_xs(b):
    """IQ4_XS: f16 d | u16 scales_h | scales_l[4] | qs[128]; sub-block j of 32 elements has the
    6-bit scale ls = nibble j of scales_l (low nibble first) | bits 2j..2j+1 of scales_h << 4;
    x = (d * (ls - 32)) * level, its codes in qs[16j .. 16j + 15] as in IQ4_NL."""
    nb = b.shape[0]
    d = _f16(b[:, 0:2])                                   # [nb, 1]
    high = b[:, 2:4].copy().view("<u2")                   # [nb, 1]
    j = np.arange(8)
    low = (b[:, 4 + j // 2] >> (4 * (j % 2)).astype(np.uint8)) & 15                  # [nb, 8]
    ls = low.astype(np.int32) | (((high >> (2 * j).astype(np.uint16)) & 3).astype(np.int32) << 4)
    dl = d * (ls - 32).astype(np.float32)                 # [nb, 8] f32
    return dl[:, :, None] * _iq4_levels(b[:, 8:136].reshape(nb, 8, 16))   # [nb, 8, 32]


def dequantize(type_, raw, n):
    """`n` elements of ggml type `type_` from bytes `raw` -> float32 [n]."""
    name, blk, size = GGML_TYPES[type_]
    raw = np.frombuffer(bytes(raw), np.uint8)
    assert n % blk == 0 and raw.size == n // blk * size, (name, n, raw.size)
    if type_ == F32:
        return raw.view("<f4").copy()
    if type_ == F16:
        return raw.view("<f2").astype(np.float32)
    if type_ == BF16:
        return (raw.view("<u2").astype(np.uint32) << 16).view(np.float32)
    b = raw.reshape(-1, size)
    if type_ == Q8_0:
        out = _decode_q8_0(b)
    elif type_ in (Q4_0, Q4_1, Q5_0, Q5_1):
        out = _decode_legacy(b, type_ in (Q4_1, Q5_1), type_ in (Q5_0, Q5_1))
    elif type_ == Q4_K:
        out = _decode_k45(b, None)
    elif type_ == Q5_K:
        out = _decode_k45(b, b[:, 16:48])
    elif type_ == Q2_K:
        out = _decode_q2_k(b)
    elif type_ == Q3_K:
        out = _decode_q3_k(b)
    elif type_ == IQ4_NL:
        out = _decode_iq4_nl(b)
    elif type_ == IQ4_XS:
        out = _decode_iq4_xs(b)
    else:
        out = _decode_q6_k(b)
    return out.reshape(-1)


def quantize_legacy(type_, x):
    """float32 values (a multiple of 32) -> Q4_0/Q4_1/Q5_0/Q5_1 blocks: a plain rounding encoder
    for tests (not ggml's; any valid encoding decodes to what `dequantize` says)."""
    has_min, bits = type_ in (Q4_1, Q5_1), (5 if type_ in (Q5_0, Q5_1) else 4)
    top = (1 << bits) - 1
    x = np.asarray(x, np.float32).reshape(-1, 32)
    if has_min:
        lo, hi = x.min(1, keepdims=True), x.max(1, keepdims=True)
        d = ((hi - lo) / top).astype(np.float16)
        df = d.astype(np.float32)
        q = np.clip(np.rint((x - lo) / np.where(df == 0, 1, df)), 0, top)
        head = [d.view(np.uint8), lo.astype(np.float16).view(np.uint8)]
    else:
        half = 1 << (bits - 1)
        d = (np.abs(x).max(1, keepdims=True) / (half - 1)).astype(np.float16)
        df = d.astype(np.float32)
        q = np.clip(np.rint(x / np.where(df == 0, 1, df)) + half, 0, top)
        head = [d.view(np.uint8)]
    q = q.astype(np.uint32)
    if bits == 5:
        qh = (((q >> 4) & 1) << np.arange(32, dtype=np.uint32)[None, :]).sum(1, dtype=np.uint32)
        head.append(qh.astype("<u4").reshape(-1, 1).view(np.uint8))
    qs = ((q[:, :16] & 15) | ((q[:, 16:] & 15) << 4)).astype(np.uint8)
    return np.concatenate(head + [qs], axis=1).tobytes()


def tensor_f32(gguf, t):
    """A tensor decoded to float32, NumPy shape (reversed dims)."""
    return dequantize(t["type"], tensor_raw(gguf, t), int(np.prod(t["dims"]))).reshape(t["dims"][::-1])


# ---------------------------------------------------------------- test blocks

def random_f16(rng, n):
    """Finite f16 values over the whole range, subnormals and both signs included."""
    v = rng.standard_normal(n) * np.exp2(rng.integers(-24, 14, n).astype(np.float64))
    return np.clip(v, -65504, 65504).astype(np.float16)


def edge_blocks(type_, n_blocks, rng):
    """`n_blocks` blocks of a block-quantised type: random bytes and finite random f16 scales,
    with the first blocks set to edge cases (zero scales, extreme quants and 6-bit scales,
    negative d/dmin, subnormal f16 scales, the largest f16)."""
    _, blk, size = GGML_TYPES[type_]
    b = rng.integers(0, 256, (n_blocks, size), dtype=np.uint8)
    f16_fields = {Q8_0: [0], Q4_K: [0, 2], Q5_K: [0, 2], Q6_K: [208], Q4_0: [0], Q4_1: [0, 2],
                  Q5_0: [0], Q5_1: [0, 2], Q2_K: [80, 82], Q3_K: [108], IQ4_NL: [0],
                  IQ4_XS: [0]}[type_]
    for off in f16_fields:
        b[:, off:off + 2] = random_f16(rng, n_blocks).view(np.uint8).reshape(n_blocks, 2)

    def set_f16(i, off, bits):
        b[i, off:off + 2] = np.array([bits], "<u2").view(np.uint8)

    edges = [
        [0x0000, 0x0000],   # zero scales
        [0x7BFF, 0x7BFF],   # largest finite f16
        [0xBC00, 0xC000],   # negative d = -1, dmin = -2
        [0x0001, 0x8001],   # smallest subnormals, dmin negative
        [0x03FF, 0x0200],   # largest subnormal, a mid subnormal
        [0x8000, 0x3C00],   # -0, 1
    ]
    for i, bits in enumerate(edges[:n_blocks]):
        for off, v in zip(f16_fields, bits):
            set_f16(i, off, v)
    quant = {Q6_K: slice(0, 208), Q2_K: slice(0, 80), Q3_K: slice(0, 108)}.get(
        type_, slice(f16_fields[-1] + 2, size))
    if n_blocks > 2:
        b[1, quant] = 0xFF   # max quants (and 6-bit scales 63 / Q6_K scales -1)
        b[2, quant] = 0x00   # min quants, zero scales
    if type_ == Q6_K and n_blocks > 3:
        b[3, 192:208] = np.array([-128, 127] * 8, np.int8).view(np.uint8)  # extreme scales
    if type_ == Q8_0 and n_blocks > 3:
        b[3, 2:34] = np.array([-128, 127] * 16, np.int8).view(np.uint8)
    return b.reshape(-1).tobytes()
