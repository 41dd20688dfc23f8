// pq/quant/packed.hpp: RTN straight into the compressed-tensors bytes, written as PQ_HD building blocks
// that a host loop and a CUDA kernel both run: where every stored tensor's bytes go (packed_layout, derived
// from F::stored_tensors), a group's range, storing and loading group parameters, and quantizing (or
// dequantizing) one segment of a row. Host loops over them are in this header (quantize_pack_host and
// friends); the kernels are in pq/cuda/kernels.cuh. Both produce exactly the bytes of pack(quantize_rtn(...)).
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include <pq/core/bf16.hpp>
#include <pq/core/minifloat.hpp>
#include <pq/core/widen.hpp>
#include <pq/formats/bundle.hpp>
#include <pq/formats/format.hpp>
#include <pq/formats/quantized.hpp>
#include <pq/quant/error.hpp>
#include <pq/core/parallel.hpp>
#include <pq/quant/scale_sweep.hpp>


namespace pq {

// Formats whose stored tensors have a compressed-tensors layout, i.e. that the packing path produces
// (MXFP6 is priced but never exported; BF16 is passed through unchanged; FP8_SOURCE's tiles only a source holds).
template <Format F> inline constexpr bool packable = F::scheme.has_value() && is_roundable<F>;
template <class F> struct is_packable : std::bool_constant<packable<F>> {};
using packable_formats = filter_t<is_packable, all_formats>;

// ---- where the bytes go ----
// Everything a packing loop needs about one Linear's stored tensors, as plain numbers (a kernel argument).
struct packed_layout {
  index_t rows = 0, cols = 0;
  index_t group_width = 0, groups_per_row = 0;
  index_t code_row_bytes = 0;  // row stride of the codes tensor (int32 rows padded to whole words)
  int code_bits = 0;           // 4, 8 or 16
  int scale_bytes = 0;         // bytes per block-scale code: 1 (E4M3, E8M0) or 2 (BF16)
  int zero_bits = 0;           // zero points: bits per code, packed down the rows into int32 (0: none)
  index_t code_bytes = 0, scale_bytes_total = 0, zero_words = 0;
};

// The layout of F's stored tensors for a [rows, cols] Linear, read off F::stored_tensors.
template <Format F>
constexpr packed_layout layout_of(index_t rows, index_t cols) {
  packed_layout l;
  l.rows = rows;
  l.cols = cols;
  l.group_width = group_width<F>(cols);
  l.groups_per_row = groups_per_row<F>(cols);
  l.code_bits = F::element::bits;
  for (const stored_tensor& t : F::stored_tensors(rows, cols)) {
    if (t.role == tensor_role::codes) {
      l.code_bytes = t.bytes();
      l.code_row_bytes = t.bytes() / rows;
    } else if (t.role == tensor_role::block_scale) {
      l.scale_bytes = static_cast<int>(dtype_bits(t.type) / 8);
      l.scale_bytes_total = t.bytes();
    } else if (t.role == tensor_role::zero_point) {
      l.zero_bits = F::element::bits;
      l.zero_words = t.numel();
    }
  }
  return l;
}

// Destinations (quantize) or sources (dequantize) of one Linear's stored tensors.
struct packed_ptrs {
  std::byte* codes = nullptr;
  std::byte* scales = nullptr;
  std::uint32_t* zeros = nullptr;  // [ceil(rows*bits/32), groups_per_row]; must start zeroed (bits are or-ed in)
};

namespace detail {
PQ_HD inline void or_word(std::uint32_t* w, std::uint32_t bits) {
#if PQ_DEVICE_CODE()
  atomicOr(w, bits);
#else
  *w |= bits;
#endif
}
// n little-endian bytes to dst: whole 32-bit words where dst and n allow (the common case), else bytes.
template <int MaxBytes>
PQ_HD inline void store_bytes(std::byte* dst, const std::uint8_t (&b)[MaxBytes], int n) {
  if ((reinterpret_cast<std::uintptr_t>(dst) & 3u) == 0 && (n & 3) == 0) {
    for (int i = 0; i < MaxBytes / 4; ++i)
      if (4 * i < n) {
        const std::uint32_t w = static_cast<std::uint32_t>(b[4 * i]) | static_cast<std::uint32_t>(b[4 * i + 1]) << 8 |
                                static_cast<std::uint32_t>(b[4 * i + 2]) << 16 |
                                static_cast<std::uint32_t>(b[4 * i + 3]) << 24;
        *reinterpret_cast<std::uint32_t*>(dst + 4 * i) = w;
      }
  } else {
    for (int i = 0; i < MaxBytes; ++i)
      if (i < n) dst[i] = static_cast<std::byte>(b[i]);
  }
}
}  // namespace detail

// Stores group (r, g)'s parameters: the block-scale code (little-endian, scale_bytes wide) and, for
// asymmetric formats, the zero point's offset code or-ed into its int32 word.
template <Format F>
PQ_HD void store_params(const packed_layout& l, const packed_ptrs& out, index_t r, index_t g, qparams p) {
  if constexpr (requires { typename F::scale_codec; }) {
    std::byte* s = out.scales + (r * l.groups_per_row + g) * l.scale_bytes;
    s[0] = static_cast<std::byte>(p.scale_code & 0xffu);
    if (l.scale_bytes == 2) s[1] = static_cast<std::byte>((p.scale_code >> 8) & 0xffu);
  }
  if constexpr (F::asymmetric) {
    const index_t bit = r * F::element::bits;
    const std::uint32_t u = static_cast<std::uint32_t>(p.zero + static_cast<std::int32_t>(F::element::offset)) &
                            (F::element::code_count - 1u);
    detail::or_word(out.zeros + (bit / 32) * l.groups_per_row + g, u << (bit % 32));
  }
}

// Group (r, g)'s parameters as a reader of the checkpoint computes them (as unpack does).
template <Format F>
PQ_HD qparams load_params(const packed_layout& l, const packed_ptrs& in, index_t r, index_t g, float tensor_scale) {
  qparams p{};
  if constexpr (requires { typename F::scale_codec; }) {
    const std::byte* s = in.scales + (r * l.groups_per_row + g) * l.scale_bytes;
    p.scale_code = static_cast<std::uint32_t>(s[0]);
    if (l.scale_bytes == 2) p.scale_code |= static_cast<std::uint32_t>(s[1]) << 8;
    p.scale = F::scale_codec::decode(p.scale_code);
    if constexpr (F::has_tensor_scale) p.scale /= tensor_scale;
  }
  if constexpr (F::asymmetric) {
    const index_t bit = r * F::element::bits;
    const std::uint32_t w = in.zeros[(bit / 32) * l.groups_per_row + g];
    p.zero = static_cast<std::int32_t>((w >> (bit % 32)) & (F::element::code_count - 1u)) -
             static_cast<std::int32_t>(F::element::offset);
  }
  return p;
}

// Quantizes the n (<= N) values v of row r starting at column c0 with parameters p and stores their codes
// in the row's bit stream (element c at bits [c*b, c*b+b) of the row's little-endian bytes). c0*b must be a
// multiple of 8. The segment ending the row also zeroes the row's padding bytes (int32 rows of INT8).
template <Format F, int N>
PQ_HD void quantize_pack_segment(const packed_layout& l, const packed_ptrs& out, const float (&v)[N], index_t r,
                                 index_t c0, int n, qparams p) {
  constexpr int bits = F::element::bits;
  static_assert(bits == 4 || bits == 8 || bits == 16, "packing path: 4-, 8- or 16-bit codes");
  static_assert(N * bits % 32 == 0, "a full segment is whole 32-bit words");
  constexpr int nbytes = N * bits / 8;
  // Every element is quantized (values past n are zeros), then masked: a condition around F::quantize would
  // keep a compiler from vectorising the division and the encoder.
  std::uint32_t c[N];
  for (int j = 0; j < N; ++j) c[j] = F::quantize(v[j], p);
  for (int j = 0; j < N; ++j) c[j] &= 0u - static_cast<std::uint32_t>(j < n);
  std::uint8_t b[nbytes];
  if constexpr (bits == 4)
    for (int i = 0; i < nbytes; ++i) b[i] = static_cast<std::uint8_t>((c[2 * i] & 0xfu) | (c[2 * i + 1] & 0xfu) << 4);
  else if constexpr (bits == 8)
    for (int i = 0; i < nbytes; ++i) b[i] = static_cast<std::uint8_t>(c[i]);
  else
    for (int i = 0; i < nbytes; ++i) b[i] = static_cast<std::uint8_t>(c[i / 2] >> (8 * (i & 1)));
  std::byte* dst = out.codes + r * l.code_row_bytes + c0 * bits / 8;
  int written = (n * bits + 7) / 8;
  if (c0 + n == l.cols) written = static_cast<int>(l.code_row_bytes - c0 * bits / 8);  // row padding: zeros
  detail::store_bytes(dst, b, written < nbytes ? written : nbytes);
  for (int i = nbytes; i < written; ++i) dst[i] = std::byte{0};
}

// The inverse: the n (<= N) dequantized values of row r from column c0.
template <Format F, int N>
PQ_HD void dequantize_segment(const packed_layout& l, const packed_ptrs& in, index_t r, index_t c0, int n, qparams p,
                              float (&y)[N]) {
  constexpr int bits = F::element::bits;
  const std::byte* src = in.codes + r * l.code_row_bytes + c0 * bits / 8;
  const auto code = [&](int j) -> std::uint32_t {
    if constexpr (bits == 4) return (static_cast<std::uint32_t>(src[j / 2]) >> (4 * (j & 1))) & 0xfu;
    else if constexpr (bits == 8) return static_cast<std::uint32_t>(src[j]);
    else return static_cast<std::uint32_t>(src[2 * j]) | static_cast<std::uint32_t>(src[2 * j + 1]) << 8;
  };
  std::uint32_t c[N];
  if (n == N) {  // the common case, free of conditions (vectorisable)
    for (int j = 0; j < N; ++j) c[j] = code(j);
  } else {
    for (int j = 0; j < N; ++j) c[j] = j < n ? code(j) : 0u;
  }
  for (int j = 0; j < N; ++j) y[j] = F::dequantize(c[j], p);
}

// Segments: the unit of work of one thread (one host-loop step). Segment s of a [rows, cols] Linear with N
// elements per segment: grouped formats split each group into group_width/N segments (N divides the group),
// row formats split each row into ceil(cols/N) segments, the last one partial.
template <Format F, int N>
struct segmentation {
  static constexpr bool per_row = F::group_size == 0;
  static_assert(per_row || F::group_size % N == 0, "a segment lies inside one group");
  index_t rows, cols, per_row_count;
  PQ_HD constexpr segmentation(index_t r, index_t c) : rows(r), cols(c), per_row_count((c + N - 1) / N) {}
  PQ_HD constexpr index_t count() const { return rows * per_row_count; }
  PQ_HD constexpr index_t row(index_t s) const { return s / per_row_count; }
  PQ_HD constexpr index_t col(index_t s) const { return (s % per_row_count) * N; }
  PQ_HD constexpr int size(index_t s) const {
    const index_t left = cols - col(s);
    return static_cast<int>(left < N ? left : N);
  }
};

// Batches (the Linears of a decision unit, the experts of an MoE layer) are launched as one grid: item i
// owns blocks [start[i], start[i+1]). The item of a block: the last i with start[i] <= block.
PQ_HD constexpr int item_of(const index_t* start, int n, index_t block) {
  int lo = 0, hi = n - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (start[mid] <= block) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

template <int N, class In>
PQ_HD void load_segment(const In* row, index_t c0, int n, float (&v)[N]) {
  for (int j = 0; j < N; ++j) v[j] = j < n ? to_float(row[c0 + j]) : 0.0f;
}

// ---- host loops over the building blocks ----

// Bytes of one packed Linear, owned: the tensors of F::stored_tensors that packed_ptrs addresses (the tensor
// scales travel separately, as floats).
struct packed_buffers {
  packed_layout layout;
  std::vector<std::byte> codes, scales;
  std::vector<std::uint32_t> zeros;
  packed_ptrs ptrs() { return {codes.data(), scales.data(), zeros.data()}; }
};
template <Format F>
packed_buffers make_packed_buffers(index_t rows, index_t cols) {
  packed_buffers b;
  b.layout = layout_of<F>(rows, cols);
  b.codes.resize(static_cast<std::size_t>(b.layout.code_bytes));
  b.scales.resize(static_cast<std::size_t>(b.layout.scale_bytes_total));
  b.zeros.assign(static_cast<std::size_t>(b.layout.zero_words), 0u);
  return b;
}

// Largest |w| of a unit's weights (every Linear of it), as the kernels compute it: the largest bit pattern
// of |w|, so a NaN or infinity shows as a value >= infinity's bits. Throws on a non-finite weight, naming `what`.
template <class In>
float unit_amax(std::span<const std::span<const In>> tensors, std::string_view what = "unit") {
  std::uint32_t m = 0;
  for (auto t : tensors)
    for (const In& x : t) {
      const std::uint32_t a = float_bits(to_float(x)) & 0x7fffffffu;
      m = a > m ? a : m;
    }
  if (m >= 0x7f800000u) throw quant_error("non-finite weight in " + std::string(what));
  return bits_float(m);
}

// RTN of one [rows, cols] Linear into its packed bytes: the same functions the quantize kernel runs, in
// a host loop over groups (rows split over `threads`). Equal to pack(quantize_rtn<F>(w, rows, cols, ts)).
template <Format F, class In>
void quantize_pack_host(const In* w, index_t rows, index_t cols, float tensor_scale, packed_buffers& out,
                        int threads = 1) {
  constexpr int N = 16;
  const packed_layout l = out.layout;
  const packed_ptrs p = out.ptrs();
  const float ts = F::has_tensor_scale ? tensor_scale : 1.0f;
  parallel_rows(rows, threads, [&](index_t r0, index_t r1) {
    std::vector<float> row(static_cast<std::size_t>(cols));
    for (index_t r = r0; r < r1; ++r) {
      const In* src = w + r * cols;
      for (index_t c = 0; c < cols; ++c) row[static_cast<std::size_t>(c)] = to_float(src[c]);
      for (index_t g = 0; g < l.groups_per_row; ++g) {
        const float* x = row.data() + g * l.group_width;
        const value_range vr = range_of(x, l.group_width);
        const qparams q = F::group_params(vr.lo, vr.hi, ts);
        store_params<F>(l, p, r, g, q);
        for (index_t c0 = 0; c0 < l.group_width; c0 += N) {
          float v[N];
          const int n = static_cast<int>(l.group_width - c0 < N ? l.group_width - c0 : N);
          load_segment<N>(x, c0, n, v);
          quantize_pack_segment<F, N>(l, p, v, r, g * l.group_width + c0, n, q);
        }
      }
    }
  });
}

// Dequantization of packed bytes to [rows, cols] Out values, as the dequantize kernel does.
template <Format F, class Out>
void dequantize_host(packed_buffers& in, float tensor_scale, Out* y, int threads = 1) {
  constexpr int N = 16;
  const packed_layout l = in.layout;
  const packed_ptrs p = in.ptrs();
  parallel_rows(l.rows, threads, [&](index_t r0, index_t r1) {
    for (index_t r = r0; r < r1; ++r)
      for (index_t g = 0; g < l.groups_per_row; ++g) {
        const qparams q = load_params<F>(l, p, r, g, tensor_scale);
        for (index_t c0 = 0; c0 < l.group_width; c0 += N) {
          float v[N];
          const int n = static_cast<int>(l.group_width - c0 < N ? l.group_width - c0 : N);
          dequantize_segment<F, N>(l, p, r, g * l.group_width + c0, n, q, v);
          for (int j = 0; j < n; ++j) y[r * l.cols + g * l.group_width + c0 + j] = from_float<Out>(v[j]);
        }
      }
  });
}

// RTN, then the scale sweep of every group (sweep_group, weights d = col_weight), packed: the sweep kernel's
// computation. Equal to pack of scale_sweep(w, col_weight, quantize_rtn(w, ...)).
template <Format F, class In>
void sweep_pack_host(const In* w, const double* col_weight, index_t rows, index_t cols, float tensor_scale,
                     const sweep_options& opt, packed_buffers& out, int threads = 1) {
  constexpr int N = 16;
  const packed_layout l = out.layout;
  const packed_ptrs p = out.ptrs();
  const float ts = F::has_tensor_scale ? tensor_scale : 1.0f;
  parallel_rows(rows, threads, [&](index_t r0, index_t r1) {
    std::vector<float> row(static_cast<std::size_t>(cols));
    for (index_t r = r0; r < r1; ++r) {
      const In* src = w + r * cols;
      for (index_t c = 0; c < cols; ++c) row[static_cast<std::size_t>(c)] = to_float(src[c]);
      for (index_t g = 0; g < l.groups_per_row; ++g) {
        const float* x = row.data() + g * l.group_width;
        const double* d = col_weight + g * l.group_width;
        const qparams q = sweep_rtn_group<F>(x, d, l.group_width, ts, opt);
        store_params<F>(l, p, r, g, q);
        for (index_t c0 = 0; c0 < l.group_width; c0 += N) {
          float v[N];
          const int n = static_cast<int>(l.group_width - c0 < N ? l.group_width - c0 : N);
          load_segment<N>(x, c0, n, v);
          quantize_pack_segment<F, N>(l, p, v, r, g * l.group_width + c0, n, q);
        }
      }
    }
  });
}

// The packed bytes as the tensors pack() returns (same order, suffixes, dtypes and shapes), so the two
// can be compared byte for byte. NVFP4's tensor scale is the float that the quantize used.
template <Format F>
std::vector<packed_tensor> as_packed_tensors(const packed_buffers& b, float tensor_scale, float input_amax = 0.0f) {
  std::vector<packed_tensor> out;
  for (const stored_tensor& t : F::stored_tensors(b.layout.rows, b.layout.cols)) {
    packed_tensor p{std::string(t.suffix), t.type, {t.shape.begin(), t.shape.begin() + t.rank}, {}};
    const auto put = [&](const void* src, std::size_t n) {
      p.bytes.resize(n);
      std::memcpy(p.bytes.data(), src, n);
    };
    switch (t.role) {
      case tensor_role::codes: put(b.codes.data(), b.codes.size()); break;
      case tensor_role::block_scale: put(b.scales.data(), b.scales.size()); break;
      case tensor_role::zero_point: put(b.zeros.data(), b.zeros.size() * 4); break;
      case tensor_role::global_scale: put(&tensor_scale, 4); break;
      case tensor_role::input_global_scale: {
        if (!(input_amax > 0.0f))
          throw quant_error(std::string(F::name) + " needs the calibrated input activation amax for input_global_scale");
        const float s = F::tensor_scale(input_amax);
        put(&s, 4);
        break;
      }
      case tensor_role::shape: {
        const std::int64_t shape[2] = {b.layout.rows, b.layout.cols};
        put(shape, 16);
        break;
      }
      case tensor_role::tile_scale: throw quant_error(std::string(F::name) + ": tile scales are a source's, never packed");
    }
    out.push_back(std::move(p));
  }
  return out;
}

}  // namespace pq
