#!/usr/bin/env python3
"""Writes a block-scaled FP8 copy of a bf16 checkpoint the way DeepSeek-V3 and the Qwen3 FP8 releases ship
theirs, and the digests pq's tests compare its own FP8 writer against.

Format (transformers' FineGrainedFP8 / vLLM's Fp8LinearMethod with weight_block_size):
  config.json   quantization_config = {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                                       "weight_block_size": [128, 128]}
  <linear>.weight            F8_E4M3 [M, N]
  <linear>.weight_scale_inv  F32     [ceil(M/128), ceil(N/128)]   (edge tiles partial)
  W = float(weight) * weight_scale_inv, block by block.
Quantized: every decoder-layer Linear (attention and MLP/expert projections). Kept as stored: embeddings,
lm_head, norms, MoE routers (mlp.gate) and mlp.shared_expert_gate.

Rounding (one reference, in fp32): scale = amax(|W| over the tile) / 448 (1 when the tile is all zero),
q = e4m3fn_RNE(W / scale) with saturation at 448.

Usage (run by hand; numpy and safetensors from pip):
  make_fp8_block.py SRC_DIR OUT_DIR          writes the FP8 checkpoint (other files copied)
  make_fp8_block.py --digests SRC_DIR        prints the FNV-1a 64 digests of every quantized tensor's FP8 bytes,
                                             F32 scales and dequantized F32 weights, and of the partial-tile
                                             test matrix [200, 300] (tests/io/fp8/fp8_digests.txt, for
                                             tests/model/test_fp8_source.cpp)
"""
import json, math, os, re, shutil, sys

import numpy as np
from safetensors.numpy import load_file, save_file

BLOCK = 128
QUANTIZED = re.compile(r"\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(experts\.\d+\.|shared_expert\.)?(gate|up|down)_proj)\.weight$")


def e4m3_encode(x):
    """float32 array -> uint8 e4m3fn codes, round to nearest even, saturating at +-448."""
    x = x.astype(np.float64)  # exact copy of the float32 values
    a = np.minimum(np.abs(x), 448.0)
    e = np.floor(np.log2(np.where(a > 0, a, 1.0)))
    e = np.maximum(e, -6.0)                       # subnormals share the step of the smallest binade
    step = np.exp2(e - 3.0)
    v = np.rint(a / step) * step                  # np.rint: ties to even
    v = np.minimum(v, 448.0)
    # encode v exactly
    ve = np.floor(np.log2(np.where(v > 0, v, 1.0)))
    normal = (v >= 2.0 ** -6)
    mant_n = np.where(normal, v / np.exp2(ve - 3.0) - 8.0, 0.0)
    code_n = (ve + 7.0) * 8.0 + mant_n
    code_s = v / 2.0 ** -9
    code = np.where(normal, code_n, code_s).astype(np.uint8)
    return code | np.where(np.signbit(x), 0x80, 0).astype(np.uint8)  # -0 keeps its sign, as torch's cast


def e4m3_decode(c):
    c = c.astype(np.int32)
    s = np.where(c & 0x80, -1.0, 1.0)
    e = (c >> 3) & 0xF
    m = c & 7
    v = np.where(e == 0, m * 2.0 ** -9, (8 + m) * np.exp2(e - 10.0))
    return (s * v).astype(np.float32)


def quantize(w):
    """float32 [M, N] -> (uint8 codes [M, N], float32 scale_inv [ceil(M/128), ceil(N/128)])."""
    M, N = w.shape
    R, C = math.ceil(M / BLOCK), math.ceil(N / BLOCK)
    q = np.zeros((M, N), np.uint8)
    s = np.zeros((R, C), np.float32)
    for i in range(R):
        for j in range(C):
            t = w[i * BLOCK:(i + 1) * BLOCK, j * BLOCK:(j + 1) * BLOCK]
            amax = np.float32(np.max(np.abs(t)))
            scale = np.float32(amax / np.float32(448.0)) if amax > 0 else np.float32(1.0)
            q[i * BLOCK:(i + 1) * BLOCK, j * BLOCK:(j + 1) * BLOCK] = e4m3_encode((t / scale).astype(np.float32))
            s[i, j] = scale
    return q, s


def dequantize(q, s):
    w = e4m3_decode(q)
    for i in range(s.shape[0]):
        for j in range(s.shape[1]):
            w[i * BLOCK:(i + 1) * BLOCK, j * BLOCK:(j + 1) * BLOCK] *= s[i, j]
    return w


def fnv1a(b):
    h = 0xCBF29CE484222325
    for byte in b:
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def fnv1a_np(a):  # over the array's bytes in C order (little-endian on every machine we run)
    return fnv1a(np.ascontiguousarray(a).tobytes())


def bf16_to_f32(t):
    return (t.astype(np.uint32) << 16).view(np.float32)


def load_bf16_dir(src):
    tensors = {}
    for f in sorted(os.listdir(src)):
        if f.endswith(".safetensors") and f != "tokens.safetensors":
            with open(os.path.join(src, f), "rb") as fh:
                n = int.from_bytes(fh.read(8), "little")
                header = json.loads(fh.read(n))
                data = fh.read()
            for name, info in header.items():
                if name == "__metadata__":
                    continue
                b, e = info["data_offsets"]
                assert info["dtype"] == "BF16", name
                tensors[name] = (np.frombuffer(data[b:e], np.uint16).reshape(info["shape"]))
    return tensors


def test_matrix():
    """[200, 300], exact binary fractions, identical in any language: partial tiles in both directions."""
    i = np.arange(200, dtype=np.int64)[:, None]
    j = np.arange(300, dtype=np.int64)[None, :]
    return ((((i * 131 + j * 71) % 257) - 128) / 64.0 * (1 + i % 5)).astype(np.float32)


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--digests":
        src = load_bf16_dir(sys.argv[2])
        q, s = quantize(test_matrix())
        print(f"test_matrix {fnv1a_np(q):016x} {fnv1a_np(s):016x} {fnv1a_np(dequantize(q, s)):016x}")
        for name in sorted(src):
            if QUANTIZED.search(name):
                q, s = quantize(bf16_to_f32(src[name]))
                print(f"{name} {fnv1a_np(q):016x} {fnv1a_np(s):016x} {fnv1a_np(dequantize(q, s)):016x}")
        return
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    src_dir, out_dir = sys.argv[1], sys.argv[2]
    src = load_bf16_dir(src_dir)
    out = {}
    for name, t in src.items():
        if QUANTIZED.search(name):
            q, s = quantize(bf16_to_f32(t))
            out[name] = q.view(np.uint8)
            out[name[:-len("weight")] + "weight_scale_inv"] = s
        else:
            out[name] = t
    os.makedirs(out_dir, exist_ok=True)
    # safetensors.numpy has no float8 or bfloat16 dtype: write the header ourselves.
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name in sorted(out):
        a = out[name]
        dt = "F8_E4M3" if name in src and QUANTIZED.search(name) else ("BF16" if a.dtype == np.uint16 else "F32")
        b = a.tobytes()
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(os.path.join(out_dir, "model.safetensors"), "wb") as fh:
        fh.write(len(h).to_bytes(8, "little"))
        fh.write(h)
        for b in blobs:
            fh.write(b)
    cfg = json.load(open(os.path.join(src_dir, "config.json")))
    cfg["quantization_config"] = {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                                  "weight_block_size": [BLOCK, BLOCK]}
    json.dump(cfg, open(os.path.join(out_dir, "config.json"), "w"), indent=2)
    for f in os.listdir(src_dir):
        if not f.endswith(".safetensors") and f not in ("config.json", "model.safetensors.index.json"):
            shutil.copy(os.path.join(src_dir, f), os.path.join(out_dir, f))
    shutil.copy(os.path.join(src_dir, "tokens.safetensors"), os.path.join(out_dir, "tokens.safetensors"))


if __name__ == "__main__":
    main()
