// pq/cuda/rtn.cuh: round-to-nearest of a Linear on the GPU with the same Format policy the host uses:
// one thread per group computes F::group_params and F::quantize, exactly as quant/rtn.hpp does.
#pragma once
#include <cstdint>
#include <vector>

#include <pq/cuda/check.cuh>
#include <pq/formats/format.hpp>
#include <pq/formats/quantized.hpp>

namespace pq::cuda {

template <Format F>
__global__ void quantize_rtn_kernel(const float* __restrict__ w, index_t rows, index_t cols, float tensor_scale,
                                    typename F::code_type* __restrict__ codes, qparams* __restrict__ params) {
  const index_t gw = F::group_size ? F::group_size : cols;
  const index_t gpr = cols / gw;
  const index_t g = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (g >= rows * gpr) return;
  const float* x = w + (g / gpr) * cols + (g % gpr) * gw;
  float lo = x[0], hi = x[0];
  for (index_t i = 1; i < gw; ++i) {
    lo = x[i] < lo ? x[i] : lo;
    hi = x[i] > hi ? x[i] : hi;
  }
  const qparams p = F::group_params(lo, hi, tensor_scale);
  params[g] = p;
  typename F::code_type* out = codes + (g / gpr) * cols + (g % gpr) * gw;
  for (index_t i = 0; i < gw; ++i) out[i] = static_cast<typename F::code_type>(F::quantize(x[i], p));
}

// Host wrapper: copies in, runs, copies back. (The throughput path keeps data on the device.)
template <Format F>
quantized_matrix<F> quantize_rtn(const std::vector<float>& w, index_t rows, index_t cols, float tensor_scale) {
  require_accepts<F>(rows, cols);
  quantized_matrix<F> q{rows, cols, {}, {}, F::has_tensor_scale ? tensor_scale : 1.0f};
  const index_t groups = rows * groups_per_row<F>(cols);
  q.codes.resize(w.size());
  q.params.resize(static_cast<std::size_t>(groups));
  float* dw = nullptr;
  typename F::code_type* dc = nullptr;
  qparams* dp = nullptr;
  check(cudaMalloc(&dw, w.size() * sizeof(float)), "cudaMalloc");
  check(cudaMalloc(&dc, q.codes.size() * sizeof(typename F::code_type)), "cudaMalloc");
  check(cudaMalloc(&dp, q.params.size() * sizeof(qparams)), "cudaMalloc");
  check(cudaMemcpy(dw, w.data(), w.size() * sizeof(float), cudaMemcpyHostToDevice), "cudaMemcpy");
  const int threads = 128;
  quantize_rtn_kernel<F><<<static_cast<unsigned>((groups + threads - 1) / threads), threads>>>(
      dw, rows, cols, q.tensor_scale, dc, dp);
  check(cudaGetLastError(), "quantize_rtn_kernel launch");
  check(cudaMemcpy(q.codes.data(), dc, q.codes.size() * sizeof(typename F::code_type), cudaMemcpyDeviceToHost),
        "cudaMemcpy");
  check(cudaMemcpy(q.params.data(), dp, q.params.size() * sizeof(qparams), cudaMemcpyDeviceToHost), "cudaMemcpy");
  cudaFree(dw);
  cudaFree(dc);
  cudaFree(dp);
  return q;
}

}  // namespace pq::cuda
