#!/usr/bin/env bash
# bench/prepare-device.sh [BUILD_DIR]: builds, on this machine, what bench/device-check.sh runs on a lent GPU
# machine, and puts it in .device/ at the repository root (ignored by .gitignore, so only the `run` call's
# carry list sends it): the CUDA suites, the pq driver and cuda_rows built for sm_90a (H100/H200)
# with the static CUDA runtime and no -march=native, the driver's non-system shared libraries, the model
# shards the suites read, and the headers a fallback build on the device needs (doctest, nlohmann/json).
# Needs nvcc (CUDA 13) on the PATH or at /usr/local/cuda. About 10 minutes on 2 busy cores (ccache helps).
set -euo pipefail
root=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
build=${1:-$root/../build-device}
export PATH=/usr/local/cuda/bin:$PATH
cd "$root"

cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DPQ_NATIVE=OFF -DPQ_BUILD_BENCH=ON \
  -DCMAKE_CUDA_ARCHITECTURES=90a-real -DPQ_CUDA_STATIC_RUNTIME=ON \
  $(command -v ccache >/dev/null && echo -DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache) \
  >/dev/null
ninja -C "$build" -j2 cuda_test_codecs cuda_test_kernels cuda_test_gptq cuda_rows gptq_rows

rm -rf .device && mkdir -p .device/bin .device/lib .device/include .device/models
# The driver stays behind (the carry limit is 64 MiB): device-check.sh benchmarks with cuda_rows and gptq_rows,
# the same rows from the same code.
cp "$build"/tests/cuda/cuda_test_codecs "$build"/tests/cuda/cuda_test_kernels "$build"/tests/cuda/cuda_test_gptq \
  "$build"/bin/cuda_rows "$build"/bin/gptq_rows .device/bin/
strip .device/bin/*
# Shared libraries outside glibc/libstdc++ and the CUDA toolkit (cuBLAS, cuSOLVER: hundreds of MiB, and on the
# device machine) that the programs link: the device image may lack them.
ldd .device/bin/* | awk '/=> \// {print $3}' | sort -u \
  | grep -Ev '/(libc|libm|libstdc\+\+|libgcc_s|libpthread|libdl|librt|ld-linux|libcu[a-zA-Z]*|libnvJitLink)[.-]' \
  | xargs -r -I{} cp -L {} .device/lib/
cp -r /usr/include/doctest /usr/include/nlohmann .device/include/
mkdir -p .device/include/eigen3 && cp -r /usr/include/eigen3/Eigen .device/include/eigen3/  # not unsupported/ (3 MiB)
models=$root/../shared/models
# PQ_CHECK=kernels|gptq (as device-check.sh) carries only that part's model files; the carry limit is 64 MiB.
check=${PQ_CHECK:-all}
for m in tiny-llama-code tiny-qwen2moe-code; do
  [ "$check" = gptq ] && [ $m = tiny-qwen2moe-code ] && continue
  mkdir -p .device/models/$m
  cp "$models/$m/model-00001-of-00002.safetensors" .device/models/$m/
done
# The GPTQ suite's real layers (tests/quant/real_layer0.hpp) read both shards and the calibration tokens.
if [ "$check" != kernels ]; then
  cp "$models/tiny-llama-code/model-00002-of-00002.safetensors" "$models/tiny-llama-code/tokens.safetensors" \
    .device/models/tiny-llama-code/
fi
git rev-parse HEAD > .device/commit
du -sh .device
if [ "$(du -sb .device | cut -f1)" -gt 66060288 ]; then  # 63 MiB: the working tree travels in the same 64 MiB
  echo "warning: .device is over 63 MiB; prepare one part (PQ_CHECK=kernels or PQ_CHECK=gptq)" >&2
fi
echo "ready: call run with command 'bash bench/device-check.sh' and carry ['.device'] (bench/README.md)"
