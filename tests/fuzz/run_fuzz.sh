#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan) and runs each for a bounded time.
# Usage: tests/fuzz/run_fuzz.sh [seconds per target, default 60] [build dir, default build/fuzz]
# Prints executions and findings per target; exits non-zero if any target found a crash.
set -euo pipefail
secs=${1:-60}
src=$(cd "$(dirname "$0")/../.." && pwd)
out=${2:-$src/build/fuzz}
mkdir -p "$out"
cxx=${CXX_FUZZ:-clang++}
flags=(-std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
       -I"$src/include" -I/usr/include/eigen3)

# Seeds: the spec's 100-byte example file, and the test models' config.json files (when present).
corpus_st="$out/corpus_safetensors"; corpus_cfg="$out/corpus_config"
mkdir -p "$corpus_st" "$corpus_cfg"
printf 'X\0\0\0\0\0\0\0{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}   \0\0\x80\x3f' \
  > "$corpus_st/spec_example"
for m in "$src"/../shared/models/*/; do
  [ -f "$m/config.json" ] && cp "$m/config.json" "$corpus_cfg/$(basename "$m").json"
done
printf '{"model_type":"qwen3_moe","hidden_size":64,"num_hidden_layers":2,"num_attention_heads":4,"vocab_size":100,"num_experts":4,"num_experts_per_tok":2,"moe_intermediate_size":32,"rope_parameters":{"rope_theta":1e6,"rope_type":"default"}}' \
  > "$corpus_cfg/qwen3_moe.json"

status=0
for target in safetensors config; do
  exe="$out/fuzz_$target"
  "$cxx" "${flags[@]}" "$src/tests/fuzz/fuzz_$target.cpp" -o "$exe"
  mkdir -p "$out/findings_$target"
  log="$out/fuzz_$target.log"
  set +e
  "$exe" -max_total_time="$secs" -max_len=4096 -rss_limit_mb=2048 -artifact_prefix="$out/findings_$target/" \
    "$out/corpus_$target" > "$log" 2>&1
  rc=$?
  set -e
  execs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | grep -o '[0-9]*$' || true)
  [ -z "$execs" ] && execs=$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#')
  findings=$(find "$out/findings_$target" -type f | wc -l)
  echo "fuzz_$target: ${secs}s, ${execs:-?} executions, $findings findings (exit $rc, log $log)"
  [ "$rc" -ne 0 ] && status=1
done
exit $status
