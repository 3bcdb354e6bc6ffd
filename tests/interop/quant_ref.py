# quant_ref.py OUTDIR: gguf-py's dequantization and quantization of seeded
# random data, the reference for tests/test_quant.c.
#
# For each type T in TYPES:
#   deq_T.raw  raw blocks (seeded random bytes; the fp16 scale fields d, m,
#              dmin overwritten by finite values uniform in +-[1e-3, 1e-1]);
#              for F16/BF16 random finite values plus special values
#   deq_T.f32  gguf.quants.dequantize(raw, T) as little-endian float32
#              (may hold inf/nan for F16/BF16, so written raw, not via write_f32)
# For each T in QUANT_TYPES:
#   quant_in.f32  seeded random floats (plus edge-case blocks), QUANT_N of them
#   quant_T.raw   gguf.quants.quantize(quant_in, T)
# meta.json lists the element counts and the gguf version.
import importlib.metadata
import os

import numpy as np
import gguf
from gguf import GGMLQuantizationType as QT
from gguf.constants import GGML_QUANT_SIZES

from _common import out_dir, write_json, write_f32

N_ELEMS = 4096  # per type: 128 blocks of 32 or 16 super-blocks of 256

# byte offsets of the fp16 scale fields in each block (ggml-common.h)
SCALE_FIELDS = {
    "Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0],
    "Q2_K": [80, 82], "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208],
}
TYPES = ["F32", "F16", "BF16"] + list(SCALE_FIELDS)
QUANT_TYPES = ["Q8_0", "Q4_0", "Q4_1"]


def sane_f16(rng, n):
    mag = rng.uniform(1e-3, 1e-1, size=n)
    sign = rng.choice([-1.0, 1.0], size=n)
    return (mag * sign).astype(np.float16)


def raw_blocks(rng, name):
    qt = QT[name]
    if name == "F32":
        v = rng.standard_normal(N_ELEMS).astype(np.float32)
        v[:4] = [0.0, -0.0, 1e-40, -3.4e38]  # zero, negative zero, subnormal, near max
        return v.view(np.uint8)
    if name in ("F16", "BF16"):
        if name == "F16":
            bits = rng.integers(0, 1 << 16, size=N_ELEMS, dtype=np.uint32).astype(np.uint16)
            specials = [0x0000, 0x8000, 0x0001, 0x8001, 0x03ff, 0x0400, 0x7bff, 0xfbff,
                        0x7c00, 0xfc00, 0x7e00, 0x7c01, 0xfe00, 0x3c00, 0x3555]
        else:
            bits = rng.integers(0, 1 << 16, size=N_ELEMS, dtype=np.uint32).astype(np.uint16)
            specials = [0x0000, 0x8000, 0x0001, 0x8001, 0x007f, 0x0080, 0x7f7f, 0xff7f,
                        0x7f80, 0xff80, 0x7fc0, 0x7f81, 0xffc0, 0x3f80, 0x3eab]
        bits[: len(specials)] = specials
        return bits.view(np.uint8)
    block_size, type_size = GGML_QUANT_SIZES[qt]
    nb = N_ELEMS // block_size
    raw = rng.integers(0, 256, size=(nb, type_size), dtype=np.uint32).astype(np.uint8)
    for off in SCALE_FIELDS[name]:
        raw[:, off:off + 2] = sane_f16(rng, nb).view(np.uint8).reshape(nb, 2)
    return raw.reshape(-1)


def quant_input(rng):
    nb = 96
    x = rng.standard_normal((nb, 32)).astype(np.float32)
    x *= rng.uniform(1e-3, 10.0, size=(nb, 1)).astype(np.float32)  # a different scale per block
    x[0] = 0.0                                     # all zeros: d = 0
    x[1] = 0.25                                    # constant block: max == min
    x[2] = np.linspace(-3, 3, 32, dtype=np.float32)  # |min| == |max|: first one wins
    x[3] = 0.0
    x[3, :12] = [127, 2.5, -2.5, 0.5, -0.5, 1.5, -1.5, 126.5, -126.5, 63.5, -63.5, 99.5]  # ties
    x[4] = -x[2]
    x[5] = rng.uniform(-1, 1, 32).astype(np.float32) * np.float32(1e-6)  # tiny values, subnormal fp16 d
    x[6] = rng.uniform(0.5, 1.0, 32).astype(np.float32)  # all positive
    x[7] = -x[6]                                        # all negative
    return x.reshape(-1)


def main():
    out = out_dir()
    rng = np.random.default_rng(20240611)
    meta = {"gguf_version": importlib.metadata.version("gguf"), "numpy": np.__version__,
            "n_elems": N_ELEMS, "types": TYPES, "quant_types": QUANT_TYPES}
    for name in TYPES:
        raw = raw_blocks(rng, name)
        deq = gguf.quants.dequantize(raw, QT[name])
        deq = np.ascontiguousarray(np.asarray(deq, dtype="<f4")).reshape(-1)
        assert deq.size == N_ELEMS, (name, deq.size)
        raw.tofile(os.path.join(out, "deq_%s.raw" % name))
        deq.tofile(os.path.join(out, "deq_%s.f32" % name))
    x = quant_input(rng)
    write_f32(os.path.join(out, "quant_in.f32"), x)
    meta["quant_n"] = int(x.size)
    for name in QUANT_TYPES:
        q = gguf.quants.quantize(x.reshape(-1, 256), QT[name])
        q = np.ascontiguousarray(q, dtype=np.uint8).reshape(-1)
        block_size, type_size = GGML_QUANT_SIZES[QT[name]]
        assert q.size == x.size // block_size * type_size
        q.tofile(os.path.join(out, "quant_%s.raw" % name))
    write_json(os.path.join(out, "meta.json"), meta)


if __name__ == "__main__":
    main()
