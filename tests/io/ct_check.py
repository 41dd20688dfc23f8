#!/usr/bin/env python3
"""Independent check of a pq-exported compressed-tensors checkpoint.

Decompresses every quantized Linear of CHECKPOINT with compressed-tensors' own decompressor (the scheme
comes from the checkpoint's quantization_config, the module-to-group match is done here with Python's
re.match as vLLM does, not by pq) and compares with pq's dequantization of the same checkpoint
(`pq decode CHECKPOINT --out PQ.safetensors`). Prints the largest differences per format and exits 1
when any exceeds the tolerance (bf16 rounding of the decompressor's output: 2^-8 relative).

    pip install torch compressed-tensors safetensors
    build/bin/pq export --model MODEL --out CKPT --format MXFP4
    build/bin/pq decode CKPT --out CKPT.pq.safetensors
    python3 tests/io/ct_check.py CKPT CKPT.pq.safetensors
"""
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

import torch
from compressed_tensors.compressors import BaseCompressor
from compressed_tensors.quantization import QuantizationConfig
from safetensors import safe_open

SUFFIXES = ("weight_packed", "weight_scale", "weight_global_scale", "input_global_scale", "weight_shape",
            "weight_zero_point", "weight")


def load_tensors(ckpt: Path) -> dict:
    tensors = {}
    for f in sorted(ckpt.glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as s:
            for k in s.keys():
                tensors[k] = s.get_tensor(k)
    return tensors


def group_of(module: str, groups: dict) -> str:
    hits = []
    for name, g in groups.items():
        for t in g.targets:
            if (t.startswith("re:") and re.match(t[3:], module)) or t == module:
                hits.append(name)
    if len(hits) != 1:
        raise SystemExit(f"{module}: matched by {len(hits)} config groups {hits}, expected exactly one")
    return hits[0]


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    ckpt, decoded = Path(sys.argv[1]), Path(sys.argv[2])
    qc_json = json.loads((ckpt / "config.json").read_text())["quantization_config"]
    qc = QuantizationConfig.model_validate(qc_json)
    tensors = load_tensors(ckpt)
    modules = sorted({k.rsplit(".", 1)[0] for k in tensors if k.endswith(".weight_scale")})
    worst = defaultdict(lambda: [0.0, 0.0, 0, 0, ""])  # format -> [max abs, max rel, modules, identical, dtype]
    failed = False
    with safe_open(str(decoded), framework="pt") as pq:
        for m in modules:
            g = group_of(m, qc.config_groups)
            scheme = qc.config_groups[g]
            fmt = scheme.format or qc_json["format"]
            local = {s: tensors[f"{m}.{s}"] for s in SUFFIXES if f"{m}.{s}" in tensors}
            ref_native = BaseCompressor.get_value_from_registry(fmt).decompress(local, scheme)["weight"]
            ref = ref_native.float()
            ours = pq.get_tensor(f"{m}.weight")
            # pq's fp32 value rounded to the decompressor's output dtype: equal when both compute the same product.
            same = torch.equal(ours.to(ref_native.dtype).float(), ref)
            if ref.shape != ours.shape:
                raise SystemExit(f"{m}: compressed-tensors gives shape {tuple(ref.shape)}, pq {tuple(ours.shape)}")
            diff = (ref - ours).abs()
            rel = (diff / ours.abs().clamp_min(1e-30)).max().item()
            w = worst[fmt]
            w[0], w[1], w[2] = max(w[0], diff.max().item()), max(w[1], rel), w[2] + 1
            w[3], w[4] = w[3] + same, str(ref_native.dtype).replace("torch.", "")
            if not torch.all(diff <= ours.abs() * 2.0**-8):
                print(f"MISMATCH {m}: max |ct - pq| = {diff.max().item():.3g}")
                failed = True
    if not modules:
        raise SystemExit(f"{ckpt}: no quantized Linears found")
    for fmt, (a, r, n, same, dt) in worst.items():
        print(f"{ckpt.name}: {fmt}: {n} Linears, max |ct - pq| = {a:.3g}, max relative = {r:.3g}; "
              f"{same}/{n} identical to pq rounded to {dt}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
