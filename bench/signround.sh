#!/usr/bin/env bash
# SignRound acceptance (issue 18) on one model of ../shared/models: uniform INT4_G128 (W4A16, symmetric, group 128)
# with pq's gptq+sweep, signround and gptq+signround against AutoRound's own default recipe (200 iterations, the
# same 128 x 512 calibration tokens, batch 8, CPU), and pq's mixed build at AutoRound's bits with and without
# SignRound; every checkpoint's KL read back by bench/ct_kl.py (compressed-tensors' decompressor, transformers'
# forward) on the first EVAL_WINDOWS eval windows, with the wall time of each method on this machine.
# Usage: bench/signround.sh MODEL_DIR [OUT_DIR] [ITERS] [EVAL_WINDOWS] [MENU_ITERS]   (prints a markdown table)
# Needs a Python with torch, transformers, compressed-tensors and auto-round (PY, default /work/venv/bin/python).
set -euo pipefail
model=$1
out=${2:-/tmp/pq-signround/$(basename "$model")}
iters=${3:-200}
eval_windows=${4:-32}
menu_iters=${5:-$iters}
pq=${PQ:-$(dirname "$0")/../build/bin/pq}
py=${PY:-/work/venv/bin/python}
here=$(dirname "$0")
tokens=$model/tokens.safetensors
mkdir -p "$out"
common=(--model "$model" --calib "$tokens:calib" --eval "$tokens:eval" --eval-windows "$eval_windows" --force)

timed() {  # timed NAME CMD...: runs CMD once (kept from an earlier run), wall seconds in $out/NAME.wall
  local name=$1
  shift
  [ -f "$out/$name.wall" ] && return
  local t0=$(date +%s.%N)
  "$@" > "$out/$name.log" 2>&1
  python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.0f}')" "$t0" "$(date +%s.%N)" > "$out/$name.wall"
}
for m in gptq+sweep signround gptq+signround; do
  timed "int4-$m" "$pq" quantize "${common[@]}" --out "$out/int4-$m" --formats INT4_G128 --target-bits 16 \
    --rounding "$m" --signround-iters "$iters"
done
timed autoround "$py" "$here/autoround_ref.py" "$model" "$out/autoround" "$iters"
bits=$(python3 -c "import json,math,sys; print(repr(math.nextafter(json.load(open(sys.argv[1]))['achieved_bpp'], math.inf)))" \
       "$out/int4-gptq+sweep/report.json")
menu=NVFP4,MXFP4,INT4_G128,MXFP8_E4M3,BF16
for m in gptq+sweep gptq+signround; do
  # one work folder for both budgets: the 4.75-bit run reuses the cost table (its wall time is the selection's)
  timed "mixed-$m" "$pq" quantize "${common[@]}" --out "$out/mixed-$m" --work "$out/work-mixed-$m" --formats "$menu" \
    --target-bits "$bits" --rounding "$m" --signround-iters "$menu_iters" --polish 6
  timed "mixed475-$m" "$pq" quantize "${common[@]}" --out "$out/mixed475-$m" --work "$out/work-mixed-$m" --formats "$menu" \
    --target-bits 4.75 --rounding "$m" --signround-iters "$menu_iters" --polish 6
done
names=(int4-gptq+sweep int4-signround int4-gptq+signround autoround mixed-gptq+sweep mixed-gptq+signround
       mixed475-gptq+sweep mixed475-gptq+signround)
ckpts=()
for n in "${names[@]}"; do ckpts+=("$out/$n"); done
"$py" "$here/ct_kl.py" "$model" "$eval_windows" "${ckpts[@]}" > "$out/kl.txt"
python3 - "$out" "${names[@]}" <<'PY'
import re, sys
out, names = sys.argv[1], sys.argv[2:]
kl = {}
for line in open(f"{out}/kl.txt"):
    m = re.match(r"(\S+): KL (\S+) over (\d+) positions; (\d+) quantized Linears at (\S+) bits/weight", line)
    if m: kl[m.group(1).rsplit("/", 1)[1]] = (float(m.group(2)), float(m.group(5)))
print("| build | bits/weight | KL (ct reader) | wall s |\n|---|---|---|---|")
for n in names:
    k, b = kl[n]
    print(f"| {n} | {b:.4f} | {k:.6f} | {open(f'{out}/{n}.wall').read().strip()} |")
PY
