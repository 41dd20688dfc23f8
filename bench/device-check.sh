#!/usr/bin/env bash
# bench/device-check.sh: everything issues 13 (kernels) and 14 (GPTQ) need a GPU for, on a lent H200
# (bench/README.md has the exact `run` call; bench/prepare-device.sh builds what it carries in .device/).
# PQ_CHECK=kernels or PQ_CHECK=gptq runs one issue's part (each under 8 minutes); unset runs both.
# Issue 13 (kernels):
#   1. the device and its state (nvidia-smi);
#   2. the CUDA suites (tests/cuda: every format's device bytes against the host's);
#   3. compute-sanitizer memcheck and racecheck on the suites (random units; the real-weight cases once);
#   4. `pq bench --device cuda --json` twice (the spread of two runs is the noise), bf16, all formats;
#   5. ncu's speed-of-light section on the NVFP4 quantize kernel (bandwidth as the hardware counts it).
# Issue 14 (GPTQ, statistics, costs on the device):
#   6. the GPTQ suite (tests/cuda/test_gptq.cu: device vs host fp64 for every format, batched, real layers);
#   7. compute-sanitizer memcheck and racecheck on it (the in-block kernel uses shared memory);
#   8. gptq_rows --json (pq bench --algo gptq's rows): H accumulation, factor, GPTQ per shape, experts, costs.
# Binaries come prebuilt in .device/bin; if they do not start here (other system libraries), the suites and
# the standalone bench (bench/cuda_rows.cpp) are built here with nvcc, which needs only headers we carry.
# Results under $OUT (at most 8 files come back): summary.txt (read this first), bench1.json, bench2.json,
# gptq.json, logs.tar.gz (every step's full output). Each step has its own time limit so the whole fits.
set -u
OUT=${OUT:-/tmp/pq-device-out}
mkdir -p "$OUT"
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
D=$root/.device
logs=$(mktemp -d)
summary=$OUT/summary.txt
start=$(date +%s)
# cuBLAS and cuSOLVER (the GPTQ programs) come from the device machine's toolkit.
export LD_LIBRARY_PATH=$D/lib:/usr/local/cuda/lib64:/usr/local/cuda/targets/x86_64-linux/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
check=${PQ_CHECK:-all}
san=(compute-sanitizer --error-exitcode 99 --print-limit 20)
export PQ_MODELS_DIR=$D/models
export PATH=$PATH:/usr/local/cuda/bin
bin=$D/bin

note() { echo "$*" | tee -a "$summary"; }
# step NAME LIMIT_S CMD...: runs CMD with a time limit, output to logs/NAME.log; notes rc and seconds.
step() {
  local name=$1 limit=$2; shift 2
  local t0=$(date +%s)
  timeout -k 5 "$limit" "$@" >"$logs/$name.log" 2>&1
  local rc=$?
  note "$(printf '%-34s rc=%-3s %4ss%s' "$name" "$rc" "$(( $(date +%s) - t0 ))" "$([ $rc = 124 ] && echo ' (time limit)')")"
  return $rc
}
doctest_tail() { grep -E '^\[doctest\] (test cases|assertions)|ERROR|error:|SKIPPED' "$logs/$1.log" | head -20 | sed 's/^/    /' | tee -a "$summary"; }

note "pq device check, commit $(cat "$D/commit" 2>/dev/null || git rev-parse HEAD 2>/dev/null), $(date -u +%FT%TZ)"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem,temperature.gpu,power.draw \
  --format=csv 2>&1 | tee -a "$summary"

# ---- binaries: prebuilt, or built here ----
if ! { "$bin/cuda_test_codecs" --list-test-cases && "$bin/cuda_test_gptq" --list-test-cases; } >"$logs/probe.log" 2>&1; then
  note "prebuilt binaries do not start here ($(head -c 300 "$logs/probe.log")); building with nvcc"
  bin=$(mktemp -d)
  flags=(-std=c++20 --expt-relaxed-constexpr -O3 -gencode=arch=compute_90a,code=sm_90a -Iinclude -I"$D/include"
         -DPQ_SOURCE_DIR="\"$root\"" -DPQ_MODELS_DIR="\"$D/models\"")
  step build-codecs 300 nvcc "${flags[@]}" tests/cuda/main.cu tests/cuda/test_codecs.cu -o "$bin/cuda_test_codecs" &
  step build-kernels 300 nvcc "${flags[@]}" tests/cuda/main.cu tests/cuda/test_kernels.cu -o "$bin/cuda_test_kernels" &
  step build-cuda-rows 300 nvcc "${flags[@]}" -I"$D/include/eigen3" -DEIGEN_NO_CUDA bench/cuda_rows.cpp \
    tools/pq/bench_cuda.cu -lcublas -lcusolver -o "$bin/cuda_rows" &
  step build-gptq 300 nvcc "${flags[@]}" -I"$D/include/eigen3" -DEIGEN_NO_CUDA tests/cuda/main.cu tests/cuda/test_gptq.cu \
    -lcublas -lcusolver -o "$bin/cuda_test_gptq" &
  step build-gptq-rows 300 nvcc "${flags[@]}" -I"$D/include/eigen3" -DEIGEN_NO_CUDA bench/gptq_rows.cpp \
    tools/pq/bench_cuda.cu -lcublas -lcusolver -o "$bin/gptq_rows" &
  wait
fi
if "$bin/pq" --version >/dev/null 2>&1; then
  bench_cmd=("$bin/pq" bench --device cuda)
else
  note "pq driver does not start here; benchmarking with cuda_rows (same rows, same code)"
  bench_cmd=("$bin/cuda_rows")
fi

if [ "$check" != gptq ]; then
# ---- correctness ----
step suite-codecs 120 "$bin/cuda_test_codecs"; doctest_tail suite-codecs
step suite-kernels 180 "$bin/cuda_test_kernels"; doctest_tail suite-kernels

# ---- sanitizers: memcheck on everything but the real-weight cases (run plainly above), racecheck on the
# kernels with shared memory or shuffles (amax, row formats, groups over lanes) through the random units ----
step memcheck-codecs 90 "${san[@]}" --tool memcheck "$bin/cuda_test_codecs" -tc='*e2m1>*,*e4m3>*,*int4>*'
step memcheck-kernels 150 "${san[@]}" --tool memcheck --leak-check full "$bin/cuda_test_kernels" -tce='*real weights*'
step racecheck-kernels 150 "${san[@]}" --tool racecheck "$bin/cuda_test_kernels" \
  -tc='*awkward*NVFP4>*,*awkward*MXFP4>*,*awkward*INT4_G128>*,*awkward*FP8_CHANNEL>*'
for s in memcheck-codecs memcheck-kernels racecheck-kernels; do
  grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|LEAK SUMMARY|Program hit|Invalid' "$logs/$s.log" | head -5 | sed "s/^/    $s: /" | tee -a "$summary"
done

# ---- speed: two full runs (bf16, every format, 16384x16384) ----
step bench1 120 "${bench_cmd[@]}" --json "$OUT/bench1.json"
step bench2 120 "${bench_cmd[@]}" --json "$OUT/bench2.json"
cat "$logs/bench2.log" | tee -a "$summary"
# ---- what the hardware counts for the NVFP4 quantize kernel ----
if command -v ncu >/dev/null; then
  step ncu-nvfp4 90 ncu --clock-control none -k regex:quantize_pack_kernel -c 1 --section SpeedOfLight \
    --section MemoryWorkloadAnalysis "${bench_cmd[@]}" --formats NVFP4 --repeats 1
  grep -E 'DRAM Throughput|Memory Throughput|Compute \(SM\)|Duration|Registers' "$logs/ncu-nvfp4.log" | head -8 | sed 's/^/    /' | tee -a "$summary"
fi

fi

if [ "$check" != kernels ]; then
# ---- issue 14: GPTQ on the device ----
step suite-gptq 150 "$bin/cuda_test_gptq"; doctest_tail suite-gptq
grep -E 'relative Frobenius|codes equal' "$logs/suite-gptq.log" | sort | uniq | head -40 | sed 's/^/    /' >>"$summary"
step memcheck-gptq 120 "${san[@]}" --tool memcheck --leak-check full "$bin/cuda_test_gptq" \
  -tc='*factor*,*indefinite*,*batched*::NVFP4>*,*statistics*,*costs*,*random data*::NVFP4>*,*random data*::FP8_CHANNEL>*'
step racecheck-gptq 120 "${san[@]}" --tool racecheck "$bin/cuda_test_gptq" \
  -tc='*random data*::NVFP4>*,*random data*::INT4_G128>*,*batched*::INT4_G128>*'
for s in memcheck-gptq racecheck-gptq; do
  grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|LEAK SUMMARY|Program hit|Invalid' "$logs/$s.log" | head -5 | sed "s/^/    $s: /" | tee -a "$summary"
done
step gptq-bench 200 "$bin/gptq_rows" --formats NVFP4,MXFP4,INT4_G128,FP8_CHANNEL --repeats 3 --json "$OUT/gptq.json"
cat "$logs/gptq-bench.log" | tee -a "$summary"
fi

note "total $(( $(date +%s) - start ))s"
tar -czf "$OUT/logs.tar.gz" -C "$logs" .
