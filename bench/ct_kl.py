#!/usr/bin/env python3
"""KL of compressed-tensors checkpoints against their source, read back independently of pq.

    python3 bench/ct_kl.py MODEL_DIR EVAL_WINDOWS CKPT [CKPT...]

Each CKPT's quantized Linears are decompressed by compressed-tensors' own decompressor (tests/io/ct_check.py's
reader: the scheme from the checkpoint's quantization_config, modules matched with re.match as vLLM does); every
other tensor the checkpoint holds replaces the source's. The model is then run in fp32 by transformers on the
first EVAL_WINDOWS rows of MODEL_DIR/tokens.safetensors 'eval', and the mean over all positions of
KL(source || quantized) of the next-token distributions is printed, with the bits per weight of the quantized
Linears (stored bytes of their tensors over their parameters).
"""
import json
import re
import sys
from pathlib import Path

import torch
from compressed_tensors.compressors import BaseCompressor
from compressed_tensors.quantization import QuantizationConfig
from safetensors import safe_open
from transformers import AutoModelForCausalLM

SUFFIXES = ("weight_packed", "weight_scale", "weight_global_scale", "input_global_scale", "weight_shape",
            "weight_zero_point", "weight")


def group_of(module, groups, model):
    # a target is a regex ("re:..."), a module name, or a module class name ("Linear"), as compressed-tensors has it
    cls = type(model.get_submodule(module)).__name__
    hits = [n for n, g in groups.items() for t in g.targets
            if (t.startswith("re:") and re.match(t[3:], module)) or t == module or t == cls]
    if len(hits) != 1:
        raise SystemExit(f"{module}: matched by {len(hits)} config groups {hits}")
    return hits[0]


def load_quantized(model_dir, ckpt):
    model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32)
    qc_json = json.loads((ckpt / "config.json").read_text())["quantization_config"]
    qc = QuantizationConfig.model_validate(qc_json)
    tensors = {}
    for f in sorted(ckpt.glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as s:
            for k in s.keys():
                tensors[k] = s.get_tensor(k)
    modules = sorted({k.rsplit(".", 1)[0] for k in tensors if k.endswith(".weight_scale")})
    params = dict(model.named_parameters())
    qbytes = qparams = 0
    with torch.no_grad():
        for m in modules:
            scheme = qc.config_groups[group_of(m, qc.config_groups, model)]
            fmt = scheme.format or qc_json["format"]
            local = {s: tensors[f"{m}.{s}"] for s in SUFFIXES if f"{m}.{s}" in tensors}
            w = BaseCompressor.get_value_from_registry(fmt).decompress(local, scheme)["weight"].float()
            params[f"{m}.weight"].copy_(w)
            qparams += w.numel()
            qbytes += sum(t.numel() * t.element_size() for s, t in local.items())
        done = {f"{m}.{s}" for m in modules for s in SUFFIXES}
        for k, t in tensors.items():
            if k not in done and k in params:
                params[k].copy_(t.float())
    return model, qbytes * 8 / max(1, qparams), len(modules)


def main():
    model_dir, n = sys.argv[1], int(sys.argv[2])
    with safe_open(f"{model_dir}/tokens.safetensors", framework="pt") as f:
        ids = f.get_tensor("eval")[:n].to(torch.long)
    src = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32).eval()
    with torch.no_grad():
        ref = [torch.log_softmax(src(ids[i:i + 1]).logits[0].float(), -1) for i in range(ids.shape[0])]
    for c in sys.argv[3:]:
        model, bpw, nq = load_quantized(model_dir, Path(c))
        model.eval()
        kl = tok = 0.0
        with torch.no_grad():
            for i in range(ids.shape[0]):
                q = torch.log_softmax(model(ids[i:i + 1]).logits[0].float(), -1)
                p = ref[i]
                kl += (p.exp() * (p - q)).sum().item()
                tok += p.shape[0]
        print(f"{c}: KL {kl / tok:.6f} over {int(tok)} positions; {nq} quantized Linears at {bpw:.4f} bits/weight")


if __name__ == "__main__":
    main()
