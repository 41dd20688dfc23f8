// pq/cuda/hessian.cuh: the calibration statistics of one Linear input accumulated on the device: H = XᵀX by
// fp32 SYRK (cublasSsyrk, lower triangle, fp32 products and fp32 accumulation; no tensor cores), Σx_j² in fp64
// and the activation amax by one kernel. Per expert for MoE: one device_stats per expert, each fed its routed
// tokens (add_each). Part of pq::cuda_linalg.
//
// Why fp32 SYRK and not TF32/BF16 tensor cores: GPTQ factors H; TF32 keeps 10 mantissa bits, so each product
// carries a relative error of ~5e-4 and H's small eigenvalues (which decide U) move by that times the largest.
// fp32 SYRK keeps the host's products to ~6e-8 each; its fp32 sums over t tokens add ~t·6e-8 in the worst case,
// ~√t·6e-8 typically (bench/README.md has the predicted agreement with the host's fp64 H).
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <pq/cuda/kernels.cuh>
#include <pq/cuda/linalg.cuh>
#include <pq/cuda/memory.cuh>
#include <pq/quant/hessian.hpp>

namespace pq::cuda {

namespace detail {
// Σ_t x_tj² (fp64) and the largest |x| bit pattern over `tokens` rows of X [tokens, cols]: a thread per column
// (coalesced across the warp) over a chunk of tokens, then one atomic per thread.
__global__ void column_stats_kernel(const float* X, index_t tokens, index_t cols, index_t chunk, double* x2,
                                    std::uint32_t* amax_bits) {
  const index_t j = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x;
  const index_t t0 = blockIdx.y * chunk, t1 = t0 + chunk < tokens ? t0 + chunk : tokens;
  if (j >= cols) return;
  double s = 0.0;
  std::uint32_t m = 0;
  for (index_t t = t0; t < t1; ++t) {
    const float v = X[t * cols + j];
    s += static_cast<double>(v) * v;
    const std::uint32_t a = float_bits(v) & 0x7fffffffu;
    m = a > m ? a : m;
  }
  atomicAdd(x2 + j, s);
  atomicMax(amax_bits, m);
}

// Lower triangle of a column-major symmetric matrix (float or double) to a full fp32 matrix.
template <class T>
__global__ void symmetric_to_float_kernel(const T* lower, index_t n, float* full) {
  const index_t i = blockIdx.y * static_cast<index_t>(blockDim.y) + threadIdx.y;
  const index_t j = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x;
  if (i >= n || j >= n) return;
  full[i + j * n] = static_cast<float>(i >= j ? lower[i + j * n] : lower[j + i * n]);
}
}  // namespace detail

// The full symmetric fp32 matrix of a column-major lower triangle (float or double), e.g. for the costs.
template <class T>
void symmetric_to_float(const T* lower, index_t n, float* full, cudaStream_t s) {
  const unsigned t = static_cast<unsigned>((n + 15) / 16);
  detail::symmetric_to_float_kernel<T><<<dim3(t, t), dim3(16, 16), 0, s>>>(lower, n, full);
  detail::launch_check("symmetric_to_float_kernel launch");
}

// Statistics of one Linear input on the device (the host's linear_stats, in fp32 for H).
class device_stats {
 public:
  device_stats(index_t cols, cudaStream_t s)
      : cols_(cols), H_(static_cast<std::size_t>(cols * cols), s), x2_(static_cast<std::size_t>(cols), s), amax_(1, s) {
    if (cols <= 0) throw quant_error("device statistics need a positive number of input features");
    H_.fill_zero();
    x2_.fill_zero();
    amax_.fill_zero();
  }

  // Adds `tokens` rows of X (device, row-major fp32 [tokens, cols]).
  void add(const float* X, index_t tokens, const blas& b, cudaStream_t s) {
    if (tokens <= 0) return;
    const float one = 1.0f;
    // X row-major [tokens, cols] is Xᵀ column-major [cols, tokens]: C = Xᵀ·(Xᵀ)ᵀ = XᵀX.
    check(cublasSsyrk(b.get(), CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, static_cast<int>(cols_), static_cast<int>(tokens),
                      &one, X, static_cast<int>(cols_), &one, H_.data(), static_cast<int>(cols_)),
          "cublasSsyrk");
    constexpr index_t chunk = 256;
    const dim3 grid(static_cast<unsigned>(detail::ceil_div(cols_, 256)),
                    static_cast<unsigned>(detail::ceil_div(tokens, chunk)));
    detail::column_stats_kernel<<<grid, 256, 0, s>>>(X, tokens, cols_, chunk, x2_.data(), amax_.data());
    detail::launch_check("column_stats_kernel launch");
    count_ += tokens;
  }

  index_t cols() const { return cols_; }
  index_t count() const { return count_; }
  const float* hessian_lower() const { return H_.data(); }  // column-major [cols, cols], lower triangle

  // The host statistics (waits for the stream): H widened to fp64. A non-finite activation is an error
  // naming the Linear, as linear_stats::add's.
  linear_stats download(std::string name) const {
    linear_stats st(std::move(name), cols_);
    const auto h = H_.download();
    for (index_t j = 0; j < cols_; ++j)
      for (index_t i = j; i < cols_; ++i) st.H(i, j) = h[static_cast<std::size_t>(i + j * cols_)];
    st.x2_sum = x2_.download();
    const std::uint32_t bits = amax_.download()[0];
    if (bits >= 0x7f800000u) throw quant_error(st.name + ": non-finite input activation");
    st.amax = bits_float(bits);
    st.count = count_;
    return st;
  }

 private:
  index_t cols_ = 0, count_ = 0;
  device_buffer<float> H_;
  device_buffer<double> x2_;
  device_buffer<std::uint32_t> amax_;
};

// Routed tokens of several inputs (the experts of an MoE layer): stats[i] gets X[i] [tokens[i], cols].
inline void add_each(std::span<device_stats* const> stats, std::span<const float* const> X,
                     std::span<const index_t> tokens, const blas& b, cudaStream_t s) {
  for (std::size_t i = 0; i < stats.size(); ++i) stats[i]->add(X[i], tokens[i], b, s);
}

}  // namespace pq::cuda
