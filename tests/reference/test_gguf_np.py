"""Self-tests of gguf_np.py: writer/reader round trip, and the vectorised block decoders
against per-element decoders written straight from the layout text (docs/gguf.md) and against
hand-worked values."""

import os
import struct
import tempfile
import unittest

import numpy as np

import gguf_np as g


def f16(bits):
    return float(np.array([bits], np.uint16).view(np.float16)[0])


def f32(x):
    return np.float32(x)


def scalar_decode(type_, raw):
    """Element by element, from the layout text; every operation on np.float32 scalars."""
    raw = bytes(raw)
    _, blk, size = g.GGML_TYPES[type_]
    out = []
    for base in range(0, len(raw), size):
        b = raw[base:base + size]
        h = lambda o: f32(f16(struct.unpack_from("<H", b, o)[0]))
        if type_ == g.Q8_0:
            d = h(0)
            out += [f32(struct.unpack_from("<b", b, 2 + i)[0]) * d for i in range(32)]
            continue
        if type_ in (g.Q4_0, g.Q4_1, g.Q5_0, g.Q5_1):
            with_min, with_high = type_ in (g.Q4_1, g.Q5_1), type_ in (g.Q5_0, g.Q5_1)
            d, m = h(0), (h(2) if with_min else None)
            qh = struct.unpack_from("<I", b, 4 if with_min else 2)[0] if with_high else 0
            qs = b[size - 16:]
            for i in range(32):
                q = (qs[i] & 15) if i < 16 else (qs[i - 16] >> 4)
                q += 16 * ((qh >> i) & 1)
                if with_min:
                    out.append(f32(q) * d + m)
                else:
                    out.append(f32(q - (16 if with_high else 8)) * d)
            continue
        if type_ in (g.Q4_K, g.Q5_K):
            d, dmin, s = h(0), h(2), b[4:16]
            qh, qs = (None, b[16:144]) if type_ == g.Q4_K else (b[16:48], b[48:176])
            for e in range(256):
                c, half, l = e // 64, (e // 32) % 2, e % 32
                j = 2 * c + half
                if j < 4:
                    sc, m = s[j] & 63, s[j + 4] & 63
                else:
                    sc = (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4)
                    m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4)
                q = (qs[32 * c + l] >> (4 * half)) & 15
                if qh is not None and (qh[l] >> j) & 1:
                    q += 16
                out.append((d * f32(sc)) * f32(q) - dmin * f32(m))
            continue
        if type_ == g.Q2_K:
            d, dmin = h(80), h(82)
            for e in range(256):
                n, j, l = e // 128, (e % 128) // 32, e % 32
                s = b[e // 16]
                q = (b[16 + 32 * n + l] >> (2 * j)) & 3
                out.append((d * f32(s & 15)) * f32(q) - dmin * f32(s >> 4))
            continue
        if type_ == g.Q3_K:
            d = h(108)
            for e in range(256):
                n, j, l, grp = e // 128, (e % 128) // 32, e % 32, e // 16
                low4 = (b[96 + grp] & 15) if grp < 8 else (b[96 + grp - 8] >> 4)
                top2 = (b[96 + 8 + grp % 4] >> (2 * (grp // 4))) & 3
                scale = (low4 | (top2 << 4)) - 32
                q = ((b[32 + 32 * n + l] >> (2 * j)) & 3) - (0 if (b[l] >> (4 * n + j)) & 1 else 4)
                out.append((d * f32(scale)) * f32(q))
            continue
        if type_ in (g.IQ4_NL, g.IQ4_XS):
            table = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113]
            d = h(0)
            for e in range(blk):
                j, i = divmod(e, 32)                     # sub-block, element within it
                if type_ == g.IQ4_NL:
                    scale, qs = d, b[2:18]
                else:
                    nibble = (b[4 + j // 2] >> (4 * (j % 2))) & 15
                    top = (struct.unpack_from("<H", b, 2)[0] >> (2 * j)) & 3
                    scale, qs = d * f32((nibble | (top << 4)) - 32), b[8 + 16 * j:8 + 16 * j + 16]
                code = (qs[i] & 15) if i < 16 else (qs[i - 16] >> 4)
                out.append(scale * f32(table[code]))
            continue
        assert type_ == g.Q6_K
        d = h(208)
        for e in range(256):
            n, r = divmod(e, 128)
            k, l = divmod(r, 32)
            low_byte = b[64 * n + l + 32 * (k % 2)]
            low = low_byte & 15 if k < 2 else low_byte >> 4
            high = (b[128 + 32 * n + l] >> (2 * k)) & 3
            sc = struct.unpack_from("<b", b, 192 + 8 * n + 2 * k + l // 16)[0]
            out.append((d * f32(sc)) * f32((low | (high << 4)) - 32))
    return np.array(out, np.float32)


class DecoderTest(unittest.TestCase):
    def test_vectorised_equals_per_element(self):
        rng = np.random.default_rng(1)
        for type_ in (g.Q8_0, g.Q4_0, g.Q4_1, g.Q5_0, g.Q5_1, g.Q4_K, g.Q5_K, g.Q6_K, g.Q2_K,
                      g.Q3_K, g.IQ4_NL, g.IQ4_XS):
            _, blk, _ = g.GGML_TYPES[type_]
            raw = g.edge_blocks(type_, 9, rng)
            got = g.dequantize(type_, raw, 9 * blk)
            want = scalar_decode(type_, raw)
            np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32),
                                          err_msg=g.GGML_TYPES[type_][0])

    def test_hand_worked_q4_k(self):
        # d = 2, dmin = 0.5; sub-block 0: sc 3, m 4; sub-block 4: sc = 5 | (1 << 4) = 21,
        # m = 6 | (2 << 4) = 38 (top bits from bytes 0 and 4).
        b = bytearray(144)
        b[0:2] = struct.pack("<e", 2.0)
        b[2:4] = struct.pack("<e", 0.5)
        b[4 + 0] = 3 | (1 << 6)
        b[4 + 4] = 4 | (2 << 6)
        b[4 + 8] = 5 | (6 << 4)
        b[16 + 0] = 0x7 | (0x9 << 4)        # element 0 (low nibble), element 32 (high nibble)
        b[16 + 64] = 0xA                    # element 128: chunk 2, sub-block 4, q = 10
        y = g.dequantize(g.Q4_K, bytes(b), 256)
        self.assertEqual(y[0], 2 * 3 * 7 - 0.5 * 4)
        self.assertEqual(y[128], 2 * 21 * 10 - 0.5 * 38)

    def test_hand_worked_q5_k_high_bit(self):
        b = bytearray(176)
        b[0:2] = struct.pack("<e", 1.0)
        b[4 + 1] = 1                         # sub-block 1: sc 1, m 0
        b[16 + 3] = 1 << 1                   # qh[3] bit 1 -> element 32 + 3 gets +16
        b[48 + 3] = 0x50                     # high nibble 5
        y = g.dequantize(g.Q5_K, bytes(b), 256)
        self.assertEqual(y[35], 21.0)

    def test_hand_worked_q6_k(self):
        b = bytearray(210)
        b[208:210] = struct.pack("<e", 0.25)
        b[192 + 8 + 5] = struct.pack("<b", -3)[0]  # half 1, quarter 2 (scale 8+4+l//16), l >= 16
        b[64 + 20] = 0xF0                    # ql: half 1, l = 20, high nibble (quarter 2) = 15
        b[128 + 32 + 20] = 2 << 4            # qh: half 1, l = 20, bits 4-5 = 2
        y = g.dequantize(g.Q6_K, bytes(b), 256)
        self.assertEqual(y[128 + 64 + 20], 0.25 * -3 * ((15 | (2 << 4)) - 32))
        self.assertEqual(y[0], 0.25 * 0 * -32)

    def test_hand_worked_q2_k(self):
        # d = 0.5, dmin = 0.25; group 9 (elements 144..159: half 1, step 0, l = 16..31) has
        # scale 7, min 3; element 150 reads qs[32 + 22] bits 0-1 = 2; element 200 (half 1, step
        # 2, l = 8, group 12: scale 0, min 15) reads qs[32 + 8] bits 4-5 = 3.
        b = bytearray(84)
        b[80:82] = struct.pack("<e", 0.5)
        b[82:84] = struct.pack("<e", 0.25)
        b[9] = 7 | (3 << 4)
        b[12] = 15 << 4
        b[16 + 32 + 22] = 2
        b[16 + 32 + 8] = 3 << 4
        y = g.dequantize(g.Q2_K, bytes(b), 256)
        self.assertEqual(y[150], 0.5 * 7 * 2 - 0.25 * 3)
        self.assertEqual(y[200], 0.5 * 0 * 3 - 0.25 * 15)
        self.assertEqual(y[0], 0.0)

    def test_hand_worked_q3_k(self):
        # d = 2. Group 13 (elements 208..223: half 1, step 2, l = 16..31): low nibble from the
        # high nibble of scales[5], top bits from scales[8 + 1] bits 6-7: (9 | 2 << 4) - 32 = 9.
        # Element 210 (l = 18): low bits (qs[32 + 18] >> 4) & 3 = 1; hmask[18] bit 4 + 2 set ->
        # q = 1. Element 211 (l = 19): same low bits, hmask bit clear -> q = 1 - 4 = -3.
        # Group 0 with every scale byte 0: (0 | 0) - 32 = -32; element 0 has q = 0 - 4.
        b = bytearray(110)
        b[108:110] = struct.pack("<e", 2.0)
        b[96 + 5] = 9 << 4
        b[96 + 9] = 2 << 6
        b[32 + 32 + 18] = 1 << 4
        b[32 + 32 + 19] = 1 << 4
        b[18] = 1 << 6
        y = g.dequantize(g.Q3_K, bytes(b), 256)
        self.assertEqual(y[210], 2 * 9 * 1)
        self.assertEqual(y[211], 2 * 9 * -3)
        self.assertEqual(y[0], 2 * -32 * -4)

    def test_hand_worked_legacy(self):
        # Q4_0: d = 0.5; qs[3] = 0xC2 -> element 3 = (2 - 8) * 0.5, element 19 = (12 - 8) * 0.5.
        b = struct.pack("<e", 0.5) + bytes(3) + bytes([0xC2]) + bytes(12)
        y = g.dequantize(g.Q4_0, b, 32)
        self.assertEqual((y[3], y[19], y[0]), (-3.0, 2.0, -4.0))
        # Q4_1: d = 2, m = -1: element 19 = 12 * 2 - 1.
        b = struct.pack("<e", 2.0) + struct.pack("<e", -1.0) + bytes(3) + bytes([0xC2]) + bytes(12)
        self.assertEqual(g.dequantize(g.Q4_1, b, 32)[19], 23.0)
        # Q5_0: d = 1; qh bit 19 set (byte 2, bit 3) -> element 19 = (12 + 16 - 16) * 1, element 3
        # without its bit = 2 - 16.
        b = struct.pack("<e", 1.0) + bytes([0, 0, 1 << 3, 0]) + bytes(3) + bytes([0xC2]) + bytes(12)
        y = g.dequantize(g.Q5_0, b, 32)
        self.assertEqual((y[19], y[3]), (12.0, -14.0))
        # Q5_1: d = 0.25, m = 3; qh bit 3 -> element 3 = (2 + 16) * 0.25 + 3.
        b = (struct.pack("<e", 0.25) + struct.pack("<e", 3.0) + bytes([1 << 3, 0, 0, 0]) + bytes(3)
             + bytes([0xC2]) + bytes(12))
        self.assertEqual(g.dequantize(g.Q5_1, b, 32)[3], 7.5)

    def test_hand_worked_iq4_nl(self):
        # d = 0.5; qs[5] = 0x3E -> element 5 = 0.5 * table[14] = 0.5 * 89, element 21 =
        # 0.5 * table[3] = 0.5 * -65; qs[0] = 0 -> elements 0 and 16 = 0.5 * -127.
        b = bytearray(18)
        b[0:2] = struct.pack("<e", 0.5)
        b[2 + 5] = 0x3E
        y = g.dequantize(g.IQ4_NL, bytes(b), 32)
        self.assertEqual((y[5], y[21], y[0], y[16]), (44.5, -32.5, -63.5, -63.5))
        # d = -2 (negative), code 8 (level 1) and 15 (113): -2, -226.
        b = struct.pack("<e", -2.0) + bytes([0xF8]) + bytes(15)
        y = g.dequantize(g.IQ4_NL, b, 32)
        self.assertEqual((y[0], y[16]), (-2.0, -226.0))
        # The smallest f16 subnormal 2^-24 and +inf: products stay f32 (2^-24 * -127 exact; inf
        # times a level is ±inf, never NaN, since 0 is not a level).
        b = struct.pack("<H", 0x0001) + bytes([0xC0]) + bytes(15)
        y = g.dequantize(g.IQ4_NL, b, 32)
        self.assertEqual((y[0], y[16]), (np.float32(2.0 ** -24 * -127), np.float32(2.0 ** -24 * 53)))
        b = struct.pack("<H", 0x7C00) + bytes([0xC0]) + bytes(15)
        y = g.dequantize(g.IQ4_NL, b, 32)
        self.assertEqual((y[0], y[16]), (-np.inf, np.inf))

    def test_hand_worked_iq4_xs(self):
        # d = 0.25. Sub-block 3: low nibble = high nibble of scales_l[1], top bits = scales_h
        # bits 6-7: ls = 0x5 | (2 << 4) = 37 -> dl = 0.25 * 5. Its element 2 reads the low nibble
        # of qs[48 + 2] = 0xA1 (code 1: -104), element 18 the high nibble (code 10: 25).
        # Sub-block 0 (every scale bit 0): ls = 0 -> dl = 0.25 * -32 = -8; element 0 code 0 ->
        # -8 * -127. Sub-block 7: all six scale bits set -> ls = 63 -> dl = 0.25 * 31; element
        # 224 + 31 reads the high nibble of qs[112 + 15] = 0xF0 (code 15: 113). Sub-block 6:
        # ls = 32 (top bits 2, low 0) -> dl = 0 and every element is 0.
        b = bytearray(136)
        b[0:2] = struct.pack("<e", 0.25)
        b[2:4] = struct.pack("<H", (2 << 6) | (3 << 14) | (2 << 12))
        b[4 + 1] = 0x5 << 4
        b[4 + 3] = 0xF << 4
        b[8 + 48 + 2] = 0xA1
        b[8 + 112 + 15] = 0xF0
        b[8 + 96:8 + 112] = bytes([0xFF]) * 16
        y = g.dequantize(g.IQ4_XS, bytes(b), 256)
        self.assertEqual((y[96 + 2], y[96 + 18]), (0.25 * 5 * -104, 0.25 * 5 * 25))
        self.assertEqual(y[0], -8 * -127)
        self.assertEqual(y[224 + 31], 0.25 * 31 * 113)
        self.assertEqual(y[224], 0.25 * 31 * -127)
        self.assertTrue((y[192:224] == 0).all())
        # d = +inf: sub-blocks with ls != 32 give ±inf; ls = 32 gives inf * 0 = NaN (f32 product).
        b[0:2] = struct.pack("<H", 0x7C00)
        with np.errstate(invalid="ignore"):
            y = g.dequantize(g.IQ4_XS, bytes(b), 256)
        self.assertEqual((y[0], y[96 + 2]), (np.inf, -np.inf))
        self.assertTrue(np.isnan(y[192:224]).all())
        # d = -(largest subnormal) = -1023 * 2^-24 with ls = 63: dl is computed in f32 first.
        b[0:2] = struct.pack("<H", 0x83FF)
        y = g.dequantize(g.IQ4_XS, bytes(b), 256)
        dl = np.float32(-1023 * 2.0 ** -24) * np.float32(31)
        self.assertEqual(y[224 + 31], dl * np.float32(113))

    def test_hand_worked_q8_0(self):
        b = struct.pack("<e", -0.5) + bytes([0x80, 0x7F]) + bytes(30)
        y = g.dequantize(g.Q8_0, b, 32)
        self.assertEqual((y[0], y[1], y[2]), (64.0, -63.5, 0.0))


class RoundTripTest(unittest.TestCase):
    def test_write_read(self):
        meta = [("general.alignment", g.Value(g.UINT32, 64)),
                ("s", g.Value(g.STRING, "ü")),
                ("a", g.Value(g.ARRAY, [g.Value(g.ARRAY, [1, 2], g.INT16),
                                        g.Value(g.ARRAY, [], g.STRING)], g.ARRAY))]
        raw = g.edge_blocks(g.Q8_0, 2, np.random.default_rng(0))
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "t.gguf")
            g.write_gguf(path, meta, [("x", g.F32, [3], np.arange(3, dtype="<f4").tobytes()),
                                      ("q", g.Q8_0, [64], raw)])
            r = g.read_gguf(path)
            self.assertEqual(r["alignment"], 64)
            self.assertEqual(r["data_offset"] % 64, 0)
            self.assertEqual([k for k, _ in r["metadata"]], ["general.alignment", "s", "a"])
            self.assertEqual(r["metadata"][1][1].value, "ü")
            self.assertEqual(r["metadata"][2][1].value[0].value, [1, 2])
            self.assertEqual([t["offset"] for t in r["tensors"]], [0, 64])
            np.testing.assert_array_equal(g.tensor_f32(r, r["tensors"][0]), [0, 1, 2])
            self.assertEqual(bytes(g.tensor_raw(r, r["tensors"][1])), raw)


if __name__ == "__main__":
    unittest.main()
