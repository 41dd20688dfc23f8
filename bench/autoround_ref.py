#!/usr/bin/env python3
"""AutoRound's own W4A16 build of a shared model (bench/README.md: SignRound), for the acceptance table.

    python3 bench/autoround_ref.py MODEL_DIR OUT_DIR [ITERS]

int4, symmetric, group 128, ITERS iterations (200: AutoRound's default recipe), nsamples 128 at seqlen 512 taken
from the model's own tokens.safetensors 'calib' tensor (the calibration pq uses), batch size 8, CPU; exported as
compressed-tensors (format llm_compressor) so that bench/ct_kl.py reads it back like pq's checkpoints.
Prints the wall time of the quantization and the export.
"""
import sys
import time
from pathlib import Path

import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer

from auto_round import AutoRound

model_dir, out = sys.argv[1], sys.argv[2]
iters = int(sys.argv[3]) if len(sys.argv) > 3 else 200
torch.manual_seed(0)
with safe_open(f"{model_dir}/tokens.safetensors", framework="pt") as f:
    calib = f.get_tensor("calib").to(torch.long)  # [128, 512]
model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32)
tok = AutoTokenizer.from_pretrained(model_dir)
data = [{"input_ids": calib[i:i + 1], "attention_mask": torch.ones_like(calib[i:i + 1])} for i in range(calib.shape[0])]
t0 = time.time()
ar = AutoRound(model, tok, bits=4, group_size=128, sym=True, iters=iters, nsamples=calib.shape[0],
               seqlen=calib.shape[1], batch_size=8, dataset=data, device_map="cpu", amp=False)
ar.quantize_and_save(out, format="llm_compressor")
# auto_round 0.16 saves into OUT/<model>-w4g128/: move it up so that OUT is the checkpoint, as pq's --out is
nested = [d for d in Path(out).iterdir() if d.is_dir() and (d / "config.json").exists()]
if not (Path(out) / "config.json").exists() and len(nested) == 1:
    for f in nested[0].iterdir():
        f.rename(Path(out) / f.name)
    nested[0].rmdir()
print(f"autoround iters={iters} wall_s={time.time() - t0:.1f}")
