#!/usr/bin/env bash
# The pipeline's acceptance figures (issue 7) on one model of ../shared/models, in one run:
#   - the shipped mixed NVFP4/MXFP8_E4M3/BF16 checkpoint at 4.75 bits/weight vs uniform NVFP4 RTN;
#   - pq (menu NVFP4, MXFP4, INT4_G128, MXFP8_E4M3, BF16) vs each uniform format at that format's own budget;
#   - GPTQ+sweep vs RTN on the same assignment (uniform NVFP4);
#   - `pq eval` on the written checkpoint vs the KL in its report.json;
#   - peak RSS of every run.
# Every run measures KL on the same eval windows. Runs that share an --out share its work folder, so the cost
# table of a rounding method is computed once and reused across budgets and format menus.
# Usage: bench/acceptance.sh MODEL_DIR [OUT_DIR] [CALIB_WINDOWS] [EVAL_WINDOWS]   (prints a markdown table)
set -euo pipefail
model=$1
out=${2:-/tmp/pq-acceptance/$(basename "$model")}
calib_windows=${3:-64}
eval_windows=${4:-32}
pq=${PQ:-$(dirname "$0")/../build/bin/pq}
tokens=$model/tokens.safetensors
mkdir -p "$out"
common=(--model "$model" --calib "$tokens:calib" --eval "$tokens:eval" --calib-windows "$calib_windows"
        --eval-windows "$eval_windows" --polish 6 --force)

run() {  # run NAME OUT_SUBDIR ARGS...: quantize, keep report as $out/NAME.json (kept from an earlier run)
  local name=$1 dir=$2
  shift 2
  [ -f "$out/$name.json" ] && [ "$name" != mixed-4.75 ] && return
  "$pq" quantize "${common[@]}" --out "$out/$dir" "$@" > "$out/$name.log" 2>&1
  cp "$out/$dir/report.json" "$out/$name.json"
}

# round to nearest: uniform baselines (first: pq is then run at exactly the budget each of them achieved)
uniform=(NVFP4:4.5 MXFP4:4.25 INT4_G128:4.125 MXFP8_E4M3:8.25)
# one calibration fills the RTN cost table of all four formats (no evaluation: nothing is measured)
"$pq" quantize --model "$model" --calib "$tokens:calib" --calib-windows "$calib_windows" --force --out "$out/rtn" \
  --rounding rtn --formats NVFP4,MXFP4,INT4_G128,MXFP8_E4M3 --target-bits 16 > "$out/rtn-cost-table.log" 2>&1
for f in "${uniform[@]}"; do
  run "uniform-${f%%:*}-rtn" rtn --rounding rtn --formats "${f%%:*}" --target-bits 16
done
# GPTQ + sweep (the default rounding): one cost table for the whole menu, reused by every budget
menu=NVFP4,MXFP4,INT4_G128,MXFP8_E4M3,BF16
for f in "${uniform[@]}"; do
  # achieved_bpp is bits/params rounded to the nearest double, possibly just below the exact ratio; the next
  # double up admits the same bits (pq's budget is the exact floor of target x params)
  b=$(python3 -c "import json,math,sys; print(repr(math.nextafter(json.load(open(sys.argv[1]))['achieved_bpp'], math.inf)))" \
      "$out/uniform-${f%%:*}-rtn.json")
  run "pq-at-${f%%:*}" gptq "--formats=$menu" --target-bits "$b"
done
run uniform-NVFP4-gptq gptq --formats NVFP4 --target-bits 16
run mixed-4.75 gptq --formats NVFP4,MXFP8_E4M3,BF16 --target-bits 4.75  # last: $out/gptq holds it for pq eval
"$pq" eval --model "$model" --quantized "$out/gptq" --tokens "$tokens:eval" --sequences "$eval_windows" \
  > "$out/eval-mixed.log" 2>&1

python3 - "$out" "$model" <<'EOF'
import json, re, sys
out, model = sys.argv[1], sys.argv[2]
r = lambda n: json.load(open(f"{out}/{n}.json"))
mib = lambda j: j["peak_rss_bytes"] / 2**20
print(f"model: {model}\n")
print("| build | bits/weight | KL | NLL | peak RSS MiB |\n|---|---|---|---|---|")
names = ["mixed-4.75", "pq-at-INT4_G128", "pq-at-MXFP4", "pq-at-NVFP4", "pq-at-MXFP8_E4M3", "uniform-NVFP4-gptq",
         "uniform-NVFP4-rtn", "uniform-MXFP4-rtn", "uniform-INT4_G128-rtn", "uniform-MXFP8_E4M3-rtn"]
for n in names:
    j = r(n)
    print(f"| {n} | {j['achieved_bpp']:.4f} | {j['shipped']['kl']:.6f} | {j['shipped']['nll']:.4f} | {mib(j):.0f} |")
m, u = r("mixed-4.75"), r("uniform-NVFP4-rtn")
print(f"\nsource NLL {m['source']['nll']:.4f}")
print(f"mixed 4.75 / uniform NVFP4 RTN KL ratio: {m['shipped']['kl'] / u['shipped']['kl']:.3f} (target <= 0.4)")
g = r("uniform-NVFP4-gptq")
print(f"GPTQ+sweep / RTN on the same assignment (uniform NVFP4): {g['shipped']['kl'] / u['shipped']['kl']:.3f}")
for f in ["INT4_G128", "MXFP4", "NVFP4", "MXFP8_E4M3"]:
    p, q = r(f"pq-at-{f}"), r(f"uniform-{f}-rtn")
    dom = p["shipped"]["kl"] <= q["shipped"]["kl"] and p["achieved_bpp"] <= q["achieved_bpp"] + 1e-12
    print(f"pq vs uniform {f} RTN: KL {p['shipped']['kl']:.6f} vs {q['shipped']['kl']:.6f}, "
          f"bpp {p['achieved_bpp']:.4f} vs {q['achieved_bpp']:.4f}: {'dominates' if dom else 'DOES NOT dominate'}")
log = open(f"{out}/eval-mixed.log").read()
kl = float(re.search(r"^KL\s+([0-9.eE+-]+)", log, re.M).group(1))
rk = m["shipped"]["kl"]
print(f"pq eval on the written mixed checkpoint: KL {kl:.6g} vs report.json {rk:.6g} (relative difference {abs(kl - rk) / rk:.1e})")
EOF
