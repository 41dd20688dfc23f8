// pq/cuda/kernels.cuh: the per-format kernels over the same Format policies and the same building blocks
// as the host (pq/quant/packed.hpp): unit amax -> tensor scale, RTN quantize + pack into the exact
// compressed-tensors bytes, dequantize, and RTN followed by the closed-form scale sweep. Every kernel is
// batched over the Linears of a decision unit (fused siblings, all experts of an MoE layer): item i of a
// batch owns a contiguous range of blocks of one grid.
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <cub/block/block_reduce.cuh>
#include <cuda/functional>

#include <pq/cuda/check.cuh>
#include <pq/cuda/memory.cuh>
#include <pq/cuda/tuning.cuh>
#include <pq/quant/packed.hpp>

namespace pq::cuda {

// One Linear of a batch, all pointers on the device. `out` is where quantize and sweep write the stored
// tensors (and where dequantize reads them); `global_scale` receives the unit's tensor scale (formats with
// one); `col_weight` is the sweep's per-column weight E[x_j^2] (cols doubles).
template <class In>
struct linear_ref {
  const In* w = nullptr;
  packed_layout layout;
  packed_ptrs out;
  float* global_scale = nullptr;
  const double* col_weight = nullptr;
};

// One Linear to dequantize: its stored tensors, its tensor scale (formats with one) and [rows, cols] Out.
template <class Out>
struct dequant_ref {
  packed_layout layout;
  packed_ptrs in;
  const float* global_scale = nullptr;
  Out* y = nullptr;
};

namespace detail {

// n = N elements from p (device memory): 16-byte streaming loads when p is 16-byte aligned and the whole
// segment is in range (the common case for group formats), else element loads.
template <int N, class In>
__device__ inline void load_global(const In* p, int n, float (&v)[N]) {
  constexpr int bytes = N * static_cast<int>(sizeof(In));
  if constexpr (bytes % 16 == 0) {
    if (n == N && (reinterpret_cast<std::uintptr_t>(p) & 15u) == 0) {
      constexpr int per = 16 / static_cast<int>(sizeof(In));
      uint4 raw[bytes / 16];
#pragma unroll
      for (int i = 0; i < bytes / 16; ++i) raw[i] = __ldcs(reinterpret_cast<const uint4*>(p) + i);
#pragma unroll
      for (int i = 0; i < bytes / 16; ++i) {
        In e[per];
        __builtin_memcpy(e, &raw[i], 16);
#pragma unroll
        for (int j = 0; j < per; ++j) v[i * per + j] = to_float(e[j]);
      }
      return;
    }
  }
#pragma unroll
  for (int j = 0; j < N; ++j) v[j] = j < n ? to_float(p[j]) : 0.0f;
}

template <int N, class Out>
__device__ inline void store_global(Out* p, int n, const float (&v)[N]) {
  constexpr int bytes = N * static_cast<int>(sizeof(Out));
  if constexpr (bytes % 16 == 0) {
    if (n == N && (reinterpret_cast<std::uintptr_t>(p) & 15u) == 0) {
      constexpr int per = 16 / static_cast<int>(sizeof(Out));
#pragma unroll
      for (int i = 0; i < bytes / 16; ++i) {
        Out e[per];
#pragma unroll
        for (int j = 0; j < per; ++j) e[j] = from_float<Out>(v[i * per + j]);
        uint4 raw;
        __builtin_memcpy(&raw, e, 16);
        __stcs(reinterpret_cast<uint4*>(p) + i, raw);
      }
      return;
    }
  }
#pragma unroll
  for (int j = 0; j < N; ++j)
    if (j < n) p[j] = from_float<Out>(v[j]);
}

// Range over the `Lanes` consecutive lanes of a group (butterfly: every lane gets the result). Every
// thread of the warp calls it, also those past the end of the batch.
template <int Lanes>
__device__ inline value_range group_range(value_range r) {
#pragma unroll
  for (int o = 1; o < Lanes; o <<= 1) {
    const float lo = __shfl_xor_sync(0xffffffffu, r.lo, o, Lanes);
    const float hi = __shfl_xor_sync(0xffffffffu, r.hi, o, Lanes);
    r.lo = lo < r.lo ? lo : r.lo;
    r.hi = r.hi < hi ? hi : r.hi;
  }
  return r;
}

template <Format F>
__device__ inline float unit_tensor_scale(const std::uint32_t* amax_bits) {
  if constexpr (F::has_tensor_scale) return F::tensor_scale(bits_float(*amax_bits));
  else return 1.0f;
}

}  // namespace detail

// ---- kernels ----

// Largest |w| bit pattern over every Linear of the batch, into *amax_bits (zeroed before). NaN and
// infinity have the largest patterns, so the caller sees them as amax >= infinity.
template <class In, class P = amax_policy>
__global__ void __launch_bounds__(P::threads) amax_kernel(const linear_ref<In>* items, const index_t* start, int n,
                                                          std::uint32_t* amax_bits) {
  const index_t b = blockIdx.x;
  const int i = item_of(start, n, b);
  const linear_ref<In> it = items[i];
  const index_t total = it.layout.rows * it.layout.cols;
  const index_t e0 = ((b - start[i]) * P::threads + threadIdx.x) * P::items;
  std::uint32_t m = 0;
  if (e0 < total) {
    const index_t left = total - e0;
    float v[P::items];
    detail::load_global<P::items>(it.w + e0, static_cast<int>(left < P::items ? left : P::items), v);
#pragma unroll
    for (int j = 0; j < P::items; ++j) {
      const std::uint32_t a = float_bits(v[j]) & 0x7fffffffu;
      m = a > m ? a : m;
    }
  }
  using reduce = cub::BlockReduce<std::uint32_t, P::threads>;
  __shared__ typename reduce::TempStorage tmp;
  m = reduce(tmp).Reduce(m, ::cuda::maximum<>{});
  if (threadIdx.x == 0) atomicMax(amax_bits, m);
}

// RTN + pack of group formats: one segment of P::items elements per thread; a group's lanes are
// consecutive threads of one warp.
template <Format F, class In, class P = quantize_policy<F>>
__global__ void __launch_bounds__(P::threads) quantize_pack_kernel(const linear_ref<In>* items, const index_t* start,
                                                                   int n, const std::uint32_t* amax_bits) {
  constexpr int lanes = static_cast<int>(F::group_size) / P::items;
  static_assert(F::group_size > 0 && lanes >= 1 && lanes <= 32 && (lanes & (lanes - 1)) == 0 &&
                    P::threads % 32 == 0,
                "a group is a power-of-two number of lanes of one warp");
  const index_t b = blockIdx.x;
  const int i = item_of(start, n, b);
  const linear_ref<In> it = items[i];
  const packed_layout& l = it.layout;
  const segmentation<F, P::items> s(l.rows, l.cols);
  const index_t seg = (b - start[i]) * P::threads + threadIdx.x;
  const bool valid = seg < s.count();
  const index_t r = valid ? s.row(seg) : 0, c0 = valid ? s.col(seg) : 0;
  float v[P::items];
  if (valid) detail::load_global<P::items>(it.w + r * l.cols + c0, P::items, v);
  else
    for (float& x : v) x = 0.0f;
  const value_range vr = detail::group_range<lanes>(range_of(v, P::items));
  if (!valid) return;
  const float ts = detail::unit_tensor_scale<F>(amax_bits);
  const qparams p = F::group_params(vr.lo, vr.hi, ts);
  if (threadIdx.x % lanes == 0) store_params<F>(l, it.out, r, c0 / l.group_width, p);
  quantize_pack_segment<F, P::items>(l, it.out, v, r, c0, P::items, p);
  if constexpr (F::has_tensor_scale)
    if (seg == 0) *it.global_scale = ts;
}

// RTN + pack of row formats (one group per row, any width): one block per row; the row's range by a block
// reduction, then the row again to quantize (the second read mostly hits L1/L2).
template <Format F, class In, class P = quantize_policy<F>>
__global__ void __launch_bounds__(P::threads) quantize_pack_rows_kernel(const linear_ref<In>* items,
                                                                        const index_t* start, int n,
                                                                        const std::uint32_t* amax_bits) {
  static_assert(F::group_size == 0);
  const index_t b = blockIdx.x;
  const int i = item_of(start, n, b);
  const linear_ref<In> it = items[i];
  const packed_layout& l = it.layout;
  const index_t r = b - start[i];
  const segmentation<F, P::items> s(l.rows, l.cols);
  const In* row = it.w + r * l.cols;
  value_range vr{infinity(), -infinity()};
  for (index_t k = threadIdx.x; k < s.per_row_count; k += P::threads) {
    float v[P::items];
    const int m = s.size(k);
    detail::load_global<P::items>(row + k * P::items, m, v);
    vr = merge(vr, range_of(v, m));
  }
  using reduce = cub::BlockReduce<float, P::threads>;
  __shared__ typename reduce::TempStorage tmp;
  __shared__ float shared_lo, shared_hi;
  const float lo = reduce(tmp).Reduce(vr.lo, ::cuda::minimum<>{});
  __syncthreads();
  const float hi = reduce(tmp).Reduce(vr.hi, ::cuda::maximum<>{});
  if (threadIdx.x == 0) {
    shared_lo = lo;
    shared_hi = hi;
  }
  __syncthreads();
  const float ts = detail::unit_tensor_scale<F>(amax_bits);
  const qparams p = F::group_params(shared_lo, shared_hi, ts);
  if (threadIdx.x == 0) store_params<F>(l, it.out, r, 0, p);
  for (index_t k = threadIdx.x; k < s.per_row_count; k += P::threads) {
    float v[P::items];
    const int m = s.size(k);
    detail::load_global<P::items>(row + k * P::items, m, v);
    quantize_pack_segment<F, P::items>(l, it.out, v, r, k * P::items, m, p);
  }
}

// RTN then the scale sweep (sweep_rtn_group: the host's arithmetic, in the host's order), packed: one
// thread per group.
template <Format F, class In, class P = sweep_policy<F>>
__global__ void __launch_bounds__(P::threads) sweep_pack_kernel(const linear_ref<In>* items, const index_t* start,
                                                                int n, const std::uint32_t* amax_bits,
                                                                sweep_options opt) {
  constexpr int N = 16;
  const index_t b = blockIdx.x;
  const int i = item_of(start, n, b);
  const linear_ref<In> it = items[i];
  const packed_layout& l = it.layout;
  const index_t grp = (b - start[i]) * P::threads + threadIdx.x;
  if (grp >= l.rows * l.groups_per_row) return;
  const index_t r = grp / l.groups_per_row, g = grp % l.groups_per_row;
  const In* x = it.w + r * l.cols + g * l.group_width;
  const float ts = detail::unit_tensor_scale<F>(amax_bits);
  const qparams p = sweep_rtn_group<F>(x, it.col_weight + g * l.group_width, l.group_width, ts, opt);
  store_params<F>(l, it.out, r, g, p);
  for (index_t c = 0; c < l.group_width; c += N) {
    float v[N];
    const int m = static_cast<int>(l.group_width - c < N ? l.group_width - c : N);
    detail::load_global<N>(x + c, m, v);
    quantize_pack_segment<F, N>(l, it.out, v, r, g * l.group_width + c, m, p);
  }
  if constexpr (F::has_tensor_scale)
    if (grp == 0) *it.global_scale = ts;
}

// Dequantize: one segment per thread; every thread reads its group's parameters (cached: a group's lanes
// share them).
template <Format F, class Out, class P = dequantize_policy<F>>
__global__ void __launch_bounds__(P::threads) dequantize_kernel(const dequant_ref<Out>* items, const index_t* start,
                                                                int n) {
  const index_t b = blockIdx.x;
  const int i = item_of(start, n, b);
  const dequant_ref<Out> it = items[i];
  const packed_layout& l = it.layout;
  const segmentation<F, P::items> s(l.rows, l.cols);
  const index_t seg = (b - start[i]) * P::threads + threadIdx.x;
  if (seg >= s.count()) return;
  const index_t r = s.row(seg), c0 = s.col(seg);
  const int m = s.size(seg);
  const float ts = F::has_tensor_scale ? *it.global_scale : 1.0f;
  const qparams p = load_params<F>(l, it.in, r, c0 / l.group_width, ts);
  float v[P::items];
  dequantize_segment<F, P::items>(l, it.in, r, c0, m, p, v);
  detail::store_global<P::items>(it.y + r * l.cols + c0, m, v);
}

// ---- launchers ----

namespace detail {
// start[i] of a batch whose item i needs blocks(i) blocks; returns the total.
template <class Items, class Blocks>
index_t block_starts(const Items& items, Blocks blocks, std::vector<index_t>& start) {
  start.clear();
  index_t total = 0;
  for (const auto& it : items) {
    start.push_back(total);
    total += blocks(it);
  }
  return total;
}
inline void launch_check(const char* what) { check(cudaGetLastError(), what); }
inline unsigned grid_of(index_t blocks, const char* what) {
  if (blocks > 0x7fffffff) throw cuda_error(std::string(what) + ": batch too large for one grid");
  return static_cast<unsigned>(blocks);
}
template <class T> index_t ceil_div(index_t a, T b) { return (a + static_cast<index_t>(b) - 1) / static_cast<index_t>(b); }
}  // namespace detail

// A decision unit's Linears on the device, ready to launch: the batch descriptors and block maps are
// uploaded once, so timing loops and repeated launches pay only for the kernels.
template <Format F, class In>
  requires packable<F>
class unit_plan {
 public:
  unit_plan(std::span<const linear_ref<In>> linears, cudaStream_t s)
      : items_(linears, s), amax_(1, s), n_(static_cast<int>(linears.size())), linears_(linears.begin(), linears.end()) {
    if (linears.empty()) throw cuda_error(std::string(F::name) + ": a unit needs at least one Linear");
    for (const auto& it : linears) require_accepts<F>(it.layout.rows, it.layout.cols);
    std::vector<index_t> st;
    amax_blocks_ = detail::block_starts(linears, [](const auto& it) {
      return detail::ceil_div(it.layout.rows * it.layout.cols, amax_policy::threads * amax_policy::items);
    }, st);
    amax_start_ = device_buffer<index_t>(std::span<const index_t>(st), s);
    using QP = quantize_policy<F>;
    quant_blocks_ = detail::block_starts(linears, [](const auto& it) {
      if constexpr (F::group_size == 0) return it.layout.rows;
      else return detail::ceil_div(segmentation<F, QP::items>(it.layout.rows, it.layout.cols).count(), QP::threads);
    }, st);
    quant_start_ = device_buffer<index_t>(std::span<const index_t>(st), s);
    sweep_blocks_ = detail::block_starts(linears, [](const auto& it) {
      return detail::ceil_div(it.layout.rows * it.layout.groups_per_row, sweep_policy<F>::threads);
    }, st);
    sweep_start_ = device_buffer<index_t>(std::span<const index_t>(st), s);
  }

  // amax over the unit (formats with a tensor scale need it before quantize or sweep; the others use it
  // only to refuse non-finite weights).
  void amax(cudaStream_t s) {
    check(cudaMemsetAsync(amax_.data(), 0, 4, s), "cudaMemsetAsync");
    amax_kernel<In><<<detail::grid_of(amax_blocks_, "amax"), amax_policy::threads, 0, s>>>(
        items_.data(), amax_start_.data(), n_, amax_.data());
    detail::launch_check("amax_kernel launch");
  }

  // RTN + pack of every Linear (after amax).
  void quantize(cudaStream_t s) {
    clear_zero_points(s);
    using QP = quantize_policy<F>;
    if constexpr (F::group_size == 0)
      quantize_pack_rows_kernel<F, In><<<detail::grid_of(quant_blocks_, "quantize"), QP::threads, 0, s>>>(
          items_.data(), quant_start_.data(), n_, amax_.data());
    else
      quantize_pack_kernel<F, In><<<detail::grid_of(quant_blocks_, "quantize"), QP::threads, 0, s>>>(
          items_.data(), quant_start_.data(), n_, amax_.data());
    detail::launch_check("quantize_pack_kernel launch");
  }

  // RTN then the scale sweep of every group, packed (after amax; col_weight set in every linear_ref).
  void sweep(const sweep_options& opt, cudaStream_t s) {
    for (const auto& it : linears_)
      if (!it.col_weight) throw cuda_error(std::string(F::name) + " sweep: a Linear has no column weights");
    clear_zero_points(s);
    sweep_pack_kernel<F, In><<<detail::grid_of(sweep_blocks_, "sweep"), sweep_policy<F>::threads, 0, s>>>(
        items_.data(), sweep_start_.data(), n_, amax_.data(), opt);
    detail::launch_check("sweep_pack_kernel launch");
  }

  // The unit's amax (waits for the stream); a non-finite weight is an error naming `what`.
  float unit_amax(cudaStream_t s, std::string_view what = "unit") const {
    std::uint32_t bits = 0;
    check(cudaMemcpyAsync(&bits, amax_.data(), 4, cudaMemcpyDeviceToHost, s), "cudaMemcpyAsync D2H");
    check(cudaStreamSynchronize(s), "cudaStreamSynchronize");
    if (bits >= 0x7f800000u) throw quant_error("non-finite weight in " + std::string(what));
    return bits_float(bits);
  }

 private:
  void clear_zero_points(cudaStream_t s) {
    if constexpr (F::asymmetric)
      for (const auto& it : linears_)
        check(cudaMemsetAsync(it.out.zeros, 0, static_cast<std::size_t>(it.layout.zero_words) * 4, s),
              "cudaMemsetAsync");
  }
  device_buffer<linear_ref<In>> items_;
  device_buffer<std::uint32_t> amax_;
  device_buffer<index_t> amax_start_, quant_start_, sweep_start_;
  index_t amax_blocks_ = 0, quant_blocks_ = 0, sweep_blocks_ = 0;
  int n_ = 0;
  std::vector<linear_ref<In>> linears_;
};

// Dequantization of a batch of packed Linears.
template <Format F, class Out>
  requires packable<F>
class dequantize_plan {
 public:
  dequantize_plan(std::span<const dequant_ref<Out>> linears, cudaStream_t s)
      : items_(linears, s), n_(static_cast<int>(linears.size())) {
    using DP = dequantize_policy<F>;
    std::vector<index_t> st;
    blocks_ = detail::block_starts(linears, [](const auto& it) {
      return detail::ceil_div(segmentation<F, DP::items>(it.layout.rows, it.layout.cols).count(), DP::threads);
    }, st);
    start_ = device_buffer<index_t>(std::span<const index_t>(st), s);
  }
  void run(cudaStream_t s) {
    dequantize_kernel<F, Out><<<detail::grid_of(blocks_, "dequantize"), dequantize_policy<F>::threads, 0, s>>>(
        items_.data(), start_.data(), n_);
    detail::launch_check("dequantize_kernel launch");
  }

 private:
  device_buffer<dequant_ref<Out>> items_;
  device_buffer<index_t> start_;
  index_t blocks_ = 0;
  int n_ = 0;
};

// ---- device copies of one Linear's stored tensors ----

// The stored tensors of one [rows, cols] Linear in F's layout, in device memory.
template <Format F>
struct device_packed {
  packed_layout layout;
  device_buffer<std::byte> codes, scales;
  device_buffer<std::uint32_t> zeros;
  device_buffer<float> global_scale;
  device_packed(index_t rows, index_t cols, cudaStream_t s)
      : layout(layout_of<F>(rows, cols)),
        codes(static_cast<std::size_t>(layout.code_bytes), s),
        scales(static_cast<std::size_t>(layout.scale_bytes_total), s),
        zeros(static_cast<std::size_t>(layout.zero_words), s),
        global_scale(1, s) {}
  packed_ptrs ptrs() { return {codes.data(), scales.data(), zeros.data()}; }
  template <class In>
  linear_ref<In> quantize_ref(const In* w, const double* col_weight = nullptr) {
    return {w, layout, ptrs(), global_scale.data(), col_weight};
  }
  template <class Out>
  dequant_ref<Out> dequant_ref_to(Out* y) {
    return {layout, ptrs(), global_scale.data(), y};
  }
  // A host copy (waits for the stream), and the tensor scale it was quantized with.
  packed_buffers download() const {
    packed_buffers b;
    b.layout = layout;
    b.codes = codes.download();
    b.scales = scales.download();
    b.zeros = zeros.download();
    return b;
  }
  float tensor_scale() const { return F::has_tensor_scale ? global_scale.download()[0] : 1.0f; }
};

}  // namespace pq::cuda
