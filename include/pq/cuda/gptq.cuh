// pq/cuda/gptq.cuh: GPTQ on the device, generic over the Format policies (a user's format too), the blocked
// algorithm of quant/gptq.hpp as restated in quant/gptq_blocks.hpp:
//   factor   fp64: R = J P (H + λI) Pᵀ J built by a kernel, Cholesky (cusolverDnXpotrf) and triangular inverse
//            (cusolverDnXtrtri) in place, U = J L⁻¹ J cast to fp32 (the host's make_gptq_factor, step by step);
//   rounding per column block: one kernel runs gptq_row_block for every row of every Linear of the batch (one
//            row per thread: rows are independent given U, so no grid-wide synchronisation per column), then
//            the trailing update W[:, i2:] -= E·U[i1:i2, i2:] with cuBLAS (one SGEMM, or one batched SGEMM for
//            Linears of equal height with their own factors, e.g. the experts of an MoE layer).
// Linears that share an input (q/k/v, gate/up) share one factor: pass the same device_factor for each.
// Part of pq::cuda_linalg.
#pragma once
#include <algorithm>
#include <cstdint>
#include <numeric>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <pq/cuda/kernels.cuh>
#include <pq/cuda/linalg.cuh>
#include <pq/cuda/memory.cuh>
#include <pq/quant/gptq_blocks.hpp>
#include <pq/quant/hessian.hpp>

namespace pq::cuda {

// Launch shape of the in-block kernel: rows per block (one per thread). 32 keeps a 4096-row Linear on 128 blocks
// (every SM of an H100/H200 busy) with the column block, the errors and U's block in shared memory:
// (2·128·33 + 128²)·4 B = 97.8 KiB per block at block 128, two blocks per SM. Not yet measured (bench/README.md).
template <Format F>
struct gptq_policy {
  static constexpr int threads = 32;
};

// The factor of one Hessian on the device, for one damping and order.
struct device_factor {
  index_t n = 0;
  float damping = 0.0f;
  bool act_order = false;
  std::vector<index_t> order;  // host copies: the per-format tables are built from them
  std::vector<float> u_diag;   // U_kk by position
  device_buffer<float> U;      // [n, n] row-major, upper, processing order
};

namespace detail {
// R[a + b·n] (column-major) = (P (H + λI) Pᵀ)(n-1-a, n-1-b), H read from its lower triangle (column-major
// fp64), dead diagonal entries (<= 0) taken as 1 as the host does.
__global__ void gptq_reversed_kernel(const double* H, index_t n, const index_t* order, double lambda, double* R) {
  const index_t a = blockIdx.y * static_cast<index_t>(blockDim.y) + threadIdx.y;
  const index_t b = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x;
  if (a >= n || b >= n) return;
  const index_t i = order[n - 1 - a], j = order[n - 1 - b];
  double v = i >= j ? H[i + j * n] : H[j + i * n];
  if (a == b) v = (v <= 0.0 ? 1.0 : v) + lambda;
  R[a + b * n] = v;
}

// U[i·n + j] = L⁻¹(n-1-i, n-1-j) for j >= i, else 0; L⁻¹ column-major fp64 in R's lower triangle.
__global__ void gptq_extract_u_kernel(const double* R, index_t n, float* U) {
  const index_t i = blockIdx.y * static_cast<index_t>(blockDim.y) + threadIdx.y;
  const index_t j = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x;
  if (i >= n || j >= n) return;
  U[i * n + j] = j >= i ? static_cast<float>(R[(n - 1 - i) + (n - 1 - j) * n]) : 0.0f;
}

// W[r·n + k] = w[r·n + order[k]]: the working copy in processing order.
__global__ void gptq_permute_kernel(const float* w, index_t rows, index_t n, const index_t* order, float* W) {
  const index_t e = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x;
  if (e >= rows * n) return;
  const index_t r = e / n, k = e % n;
  W[e] = w[r * n + order[k]];
}

inline dim3 tiles_of(index_t n) {
  const unsigned t = static_cast<unsigned>((n + 15) / 16);
  return dim3(t, t);
}
}  // namespace detail

// Factors the Hessian H (device, column-major fp64 [n, n], lower triangle read) for GPTQ, as make_gptq_factor
// does: the same order (the diagonal comes to the host, n values), the same damping, fp64 throughout, U in
// fp32. A Hessian that is not positive definite after damping is an error naming `name`.
inline device_factor factor_on_device(const double* H, index_t n, float damping, bool act_order, std::string_view name,
                                      const solver& sv, cudaStream_t s) {
  device_factor f;
  f.n = n;
  f.damping = damping;
  f.act_order = act_order;
  std::vector<double> d(static_cast<std::size_t>(n));
  check(cudaMemcpy2DAsync(d.data(), sizeof(double), H, (n + 1) * sizeof(double), sizeof(double),
                          static_cast<std::size_t>(n), cudaMemcpyDeviceToHost, s),
        "cudaMemcpy2DAsync (diagonal of H)");
  check(cudaStreamSynchronize(s), "cudaStreamSynchronize");
  double sum = 0.0;
  for (double& v : d) {
    if (v <= 0.0) v = 1.0;
    sum += v;
  }
  f.order.resize(static_cast<std::size_t>(n));
  std::iota(f.order.begin(), f.order.end(), index_t{0});
  if (act_order)
    std::stable_sort(f.order.begin(), f.order.end(), [&](index_t a, index_t b) {
      return d[static_cast<std::size_t>(a)] > d[static_cast<std::size_t>(b)];
    });
  const double lambda = static_cast<double>(damping) * (sum / static_cast<double>(n));
  device_buffer<index_t> order(std::span<const index_t>(f.order), s);
  device_buffer<double> R(static_cast<std::size_t>(n * n), s);
  detail::gptq_reversed_kernel<<<detail::tiles_of(n), dim3(16, 16), 0, s>>>(H, n, order.data(), lambda, R.data());
  detail::launch_check("gptq_reversed_kernel launch");

  std::size_t dev_bytes = 0, host_bytes = 0, dev2 = 0, host2 = 0;
  check(cusolverDnXpotrf_bufferSize(sv.get(), sv.params(), CUBLAS_FILL_MODE_LOWER, n, CUDA_R_64F, R.data(), n,
                                    CUDA_R_64F, &dev_bytes, &host_bytes),
        "cusolverDnXpotrf_bufferSize");
  check(cusolverDnXtrtri_bufferSize(sv.get(), CUBLAS_FILL_MODE_LOWER, CUBLAS_DIAG_NON_UNIT, n, CUDA_R_64F, R.data(), n,
                                    &dev2, &host2),
        "cusolverDnXtrtri_bufferSize");
  device_buffer<std::byte> work(std::max(dev_bytes, dev2), s);
  std::vector<std::byte> host_work(std::max(host_bytes, host2));
  device_buffer<int> info(2, s);
  check(cusolverDnXpotrf(sv.get(), sv.params(), CUBLAS_FILL_MODE_LOWER, n, CUDA_R_64F, R.data(), n, CUDA_R_64F,
                         work.data(), work.size(), host_work.data(), host_work.size(), info.data()),
        "cusolverDnXpotrf");
  check(cusolverDnXtrtri(sv.get(), CUBLAS_FILL_MODE_LOWER, CUBLAS_DIAG_NON_UNIT, n, CUDA_R_64F, R.data(), n,
                         work.data(), work.size(), host_work.data(), host_work.size(), info.data() + 1),
        "cusolverDnXtrtri");
  const auto status = info.download();
  if (status[0] != 0 || status[1] != 0)
    throw quant_error(std::string(name) + ": the damped Hessian is not positive definite (damping " +
                      std::to_string(damping) + "); raise the damping");
  f.U = device_buffer<float>(static_cast<std::size_t>(n * n), s);
  detail::gptq_extract_u_kernel<<<detail::tiles_of(n), dim3(16, 16), 0, s>>>(R.data(), n, f.U.data());
  detail::launch_check("gptq_extract_u_kernel launch");
  f.u_diag.resize(static_cast<std::size_t>(n));
  check(cudaMemcpy2DAsync(f.u_diag.data(), sizeof(float), f.U.data(), (n + 1) * sizeof(float), sizeof(float),
                          static_cast<std::size_t>(n), cudaMemcpyDeviceToHost, s),
        "cudaMemcpy2DAsync (diagonal of U)");
  check(cudaStreamSynchronize(s), "cudaStreamSynchronize");
  return f;
}

// The same from host statistics (their fp64 H is uploaded as it is stored: column-major, lower triangle).
inline device_factor factor_on_device(const linear_stats& st, float damping, bool act_order, const solver& sv,
                                      cudaStream_t s) {
  device_buffer<double> H(std::span<const double>(st.H.data(), static_cast<std::size_t>(st.H.size())), s);
  return factor_on_device(H.data(), st.cols, damping, act_order, st.name, sv, s);
}

// One Linear (or the stacked rows of Linears sharing an input) to round: fp32 weights on the device, row-major
// [rows, factor->n], original column order.
struct gptq_linear {
  const device_factor* factor = nullptr;
  const float* w = nullptr;
  index_t rows = 0;
  float tensor_scale = 1.0f;  // F::tensor_scale of the decision unit's amax (formats with a tensor scale)
};

// What the in-block kernel reads and writes for one Linear of the batch.
template <Format F>
struct gptq_item {
  gptq_operands op;
  float* W = nullptr;        // working weights [rows, n], processing order
  const float* w = nullptr;  // original weights [rows, n]
  float* E = nullptr;        // the block's scaled errors, [block, rows] (Eᵀ, coalesced)
  typename F::code_type* codes = nullptr;
  qparams* params = nullptr;
  index_t rows = 0;
  float tensor_scale = 1.0f;
};

template <Format F, class P = gptq_policy<F>>
__global__ void __launch_bounds__(P::threads) gptq_block_kernel(const gptq_item<F>* items, const index_t* start, int n_items,
                                                                index_t i1, index_t i2, sweep_options opt,
                                                                bool use_sweep) {
  constexpr int T = P::threads;
  constexpr index_t ws = T + 1;  // padded: consecutive columns of one row fall in different banks
  extern __shared__ float smem[];
  const index_t bw = i2 - i1;
  float* sW = smem;
  float* sE = sW + bw * ws;
  float* sU = sE + bw * ws;
  const int i = item_of(start, n_items, blockIdx.x);
  const gptq_item<F> it = items[i];
  const index_t n = it.op.n, row0 = (blockIdx.x - start[i]) * T;
  for (index_t e = threadIdx.x; e < bw * bw; e += T) sU[e] = it.op.U[(i1 + e / bw) * n + i1 + e % bw];
  for (index_t e = threadIdx.x; e < T * bw; e += T) {
    const index_t rr = e / bw, b = e % bw, r = row0 + rr;
    sW[b * ws + rr] = r < it.rows ? it.W[r * n + i1 + b] : 0.0f;
  }
  __syncthreads();
  const index_t r = row0 + threadIdx.x;
  if (r < it.rows)
    gptq_row_block<F>(it.op, i1, i2, sW + threadIdx.x, ws, sE + threadIdx.x, ws, sU, bw, it.W + r * n, it.w + r * n,
                      it.codes + r * n, it.params + r * groups_per_row<F>(n), it.tensor_scale,
                      use_sweep ? &opt : nullptr);
  __syncthreads();
  for (index_t e = threadIdx.x; e < T * bw; e += T) {
    const index_t b = e / T, rr = e % T, row = row0 + rr;
    if (row < it.rows) it.E[b * it.rows + row] = sE[b * ws + rr];
  }
}

// GPTQ of a batch of Linears with format F on one stream. Every Linear has n = its factor's columns; all of
// them must have the same n. Construction uploads the per-factor tables and allocates the working state;
// run() rounds (repeatable, for timing); result(i) downloads Linear i's codes and parameters.
template <Format F>
class gptq_plan {
 public:
  gptq_plan(std::span<const gptq_linear> linears, index_t block_size, std::optional<sweep_options> sweep,
            cudaStream_t s)
      : sweep_(sweep), linears_(linears.begin(), linears.end()) {
    if (linears.empty()) throw cuda_error(std::string(F::name) + " GPTQ: a batch needs at least one Linear");
    n_ = linears[0].factor->n;
    for (const auto& l : linears) {
      if (l.factor->n != n_) throw cuda_error(std::string(F::name) + " GPTQ: the Linears of a batch must share K");
      require_accepts<F>(l.rows, n_);
    }
    block_ = std::clamp<index_t>(block_size, 1, n_);
    smem_ = static_cast<std::size_t>(2 * block_ * (gptq_policy<F>::threads + 1) + block_ * block_) * sizeof(float);
    int dev = 0, limit = 0;
    check(cudaGetDevice(&dev), "cudaGetDevice");
    check(cudaDeviceGetAttribute(&limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev), "cudaDeviceGetAttribute");
    if (smem_ > static_cast<std::size_t>(limit))
      throw cuda_error(std::string(F::name) + " GPTQ: block " + std::to_string(block_) + " needs " +
                       std::to_string(smem_) + " bytes of shared memory, the device has " + std::to_string(limit));
    check(cudaFuncSetAttribute(gptq_block_kernel<F>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                               static_cast<int>(smem_)),
          "cudaFuncSetAttribute");
    // Tables per distinct factor.
    std::vector<gptq_item<F>> items;
    std::vector<index_t> st;
    index_t blocks = 0;
    for (const auto& l : linears) {
      std::size_t t = 0;
      while (t < factors_.size() && factors_[t] != l.factor) ++t;
      if (t == factors_.size()) {
        factors_.push_back(l.factor);
        const gptq_tables tb = make_gptq_tables(l.factor->order, group_width<F>(n_), l.factor->u_diag);
        order_.emplace_back(std::span<const index_t>(l.factor->order), s);
        position_.emplace_back(std::span<const index_t>(tb.position), s);
        first_.emplace_back(std::span<const std::uint8_t>(tb.first), s);
        saliency_.emplace_back(std::span<const double>(tb.saliency), s);
      }
      W_.emplace_back(static_cast<std::size_t>(l.rows * n_), s);
      E_.emplace_back(static_cast<std::size_t>(l.rows * block_), s);
      codes_.emplace_back(static_cast<std::size_t>(l.rows * n_), s);
      params_.emplace_back(static_cast<std::size_t>(l.rows * groups_per_row<F>(n_)), s);
      gptq_item<F> it;
      it.op = {n_, order_[t].data(), position_[t].data(), first_[t].data(), l.factor->U.data(), saliency_[t].data()};
      it.W = W_.back().data();
      it.w = l.w;
      it.E = E_.back().data();
      it.codes = codes_.back().data();
      it.params = params_.back().data();
      it.rows = l.rows;
      it.tensor_scale = F::has_tensor_scale ? l.tensor_scale : 1.0f;
      items.push_back(it);
      factor_of_.push_back(t);
      st.push_back(blocks);
      blocks += detail::ceil_div(l.rows, gptq_policy<F>::threads);
    }
    blocks_ = blocks;
    items_ = device_buffer<gptq_item<F>>(std::span<const gptq_item<F>>(items), s);
    start_ = device_buffer<index_t>(std::span<const index_t>(st), s);
    // Batched trailing update: Linears of equal height, one pointer triple per Linear and column block.
    equal_rows_ = std::all_of(linears.begin(), linears.end(), [&](const auto& l) { return l.rows == linears[0].rows; });
    if (equal_rows_ && linears.size() > 1) {
      std::vector<const float*> a, b;
      std::vector<float*> c;
      for (index_t i1 = 0; i1 < n_; i1 += block_) {
        const index_t i2 = std::min(i1 + block_, n_);
        for (std::size_t k = 0; k < linears.size(); ++k) {
          a.push_back(linears[k].factor->U.data() + i1 * n_ + i2);  // cuBLAS's first operand: U block (column-major view)
          b.push_back(E_[k].data());
          c.push_back(W_[k].data() + i2);
        }
      }
      ptr_a_ = device_buffer<const float*>(std::span<const float* const>(a), s);
      ptr_b_ = device_buffer<const float*>(std::span<const float* const>(b), s);
      ptr_c_ = device_buffer<float*>(std::span<float* const>(c), s);
    }
  }

  index_t columns() const { return n_; }
  index_t block() const { return block_; }

  // Rounds every Linear of the batch (the weights are re-read: run() may be repeated).
  void run(const blas& b, cudaStream_t s) {
    for (std::size_t k = 0; k < linears_.size(); ++k) {
      const index_t e = linears_[k].rows * n_;
      detail::gptq_permute_kernel<<<detail::grid_of(detail::ceil_div(e, 256), "gptq permute"), 256, 0, s>>>(
          linears_[k].w, linears_[k].rows, n_, order_[factor_of_[k]].data(), W_[k].data());
      detail::launch_check("gptq_permute_kernel launch");
    }
    const sweep_options opt = sweep_ ? *sweep_ : sweep_options{};
    index_t blk = 0;
    for (index_t i1 = 0; i1 < n_; i1 += block_, ++blk) {
      const index_t i2 = std::min(i1 + block_, n_), bw = i2 - i1;
      gptq_block_kernel<F><<<detail::grid_of(blocks_, "gptq block"), gptq_policy<F>::threads, smem_, s>>>(
          items_.data(), start_.data(), static_cast<int>(linears_.size()), i1, i2, opt, sweep_.has_value());
      detail::launch_check("gptq_block_kernel launch");
      if (i2 >= n_) continue;
      // W[:, i2:] -= E·U[i1:i2, i2:]  (row-major; E is stored as Eᵀ [bw, rows])
      if (equal_rows_ && linears_.size() > 1) {
        const float alpha = -1.0f, beta = 1.0f;
        const std::size_t off = static_cast<std::size_t>(blk) * linears_.size();
        const int rows = static_cast<int>(linears_[0].rows);
        check(cublasSgemmBatched(b.get(), CUBLAS_OP_N, CUBLAS_OP_T, static_cast<int>(n_ - i2), rows,
                                 static_cast<int>(bw), &alpha, ptr_a_.data() + off, static_cast<int>(n_),
                                 ptr_b_.data() + off, rows, &beta, ptr_c_.data() + off, static_cast<int>(n_),
                                 static_cast<int>(linears_.size())),
              "cublasSgemmBatched");
      } else {
        for (std::size_t k = 0; k < linears_.size(); ++k)
          gemm_row_major(b, linears_[k].rows, n_ - i2, bw, -1.0f, E_[k].data(), linears_[k].rows, true,
                         linears_[k].factor->U.data() + i1 * n_ + i2, n_, false, 1.0f, W_[k].data() + i2, n_);
      }
    }
  }

  // Linear i's rounding (waits for the stream).
  quantized_matrix<F> result(std::size_t i) const {
    quantized_matrix<F> q;
    q.rows = linears_[i].rows;
    q.cols = n_;
    q.tensor_scale = F::has_tensor_scale ? linears_[i].tensor_scale : 1.0f;
    q.codes = codes_[i].download();
    q.params = params_[i].download();
    return q;
  }

 private:
  std::optional<sweep_options> sweep_;
  std::vector<gptq_linear> linears_;
  std::vector<const device_factor*> factors_;
  std::vector<std::size_t> factor_of_;
  std::vector<device_buffer<index_t>> order_, position_;
  std::vector<device_buffer<std::uint8_t>> first_;
  std::vector<device_buffer<double>> saliency_;
  std::vector<device_buffer<float>> W_, E_;
  std::vector<device_buffer<typename F::code_type>> codes_;
  std::vector<device_buffer<qparams>> params_;
  device_buffer<gptq_item<F>> items_;
  device_buffer<index_t> start_;
  device_buffer<const float*> ptr_a_, ptr_b_;
  device_buffer<float*> ptr_c_;
  index_t n_ = 0, block_ = 0, blocks_ = 0;
  std::size_t smem_ = 0;
  bool equal_rows_ = false;
};

}  // namespace pq::cuda
