// pq/formats/quantized.hpp: a Linear quantized with format F (element codes, per-group parameters, the
// tensor scale), its dequantization, and packing to / from the exact tensors the format stores.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include <pq/core/bf16.hpp>
#include <pq/core/pack.hpp>
#include <pq/formats/format.hpp>

namespace pq {

// Packed tensors that do not fit their format (a missing tensor, a wrong size or shape): a corrupt or foreign
// checkpoint. The message names the format and the tensor.
struct packed_error : pq::error {
  using pq::error::error;
};

template <Format F>
struct quantized_matrix {
  index_t rows = 0, cols = 0;
  std::vector<typename F::code_type> codes;  // [rows, cols] element codes
  std::vector<qparams> params;               // [rows, groups_per_row] group parameters
  float tensor_scale = 1.0f;                 // NVFP4: the decision unit's global scale (a divisor)

  const qparams& group(index_t r, index_t c) const { return params[r * groups_per_row<F>(cols) + c / group_width<F>(cols)]; }
};

// The values a reader of the checkpoint computes: element value times the group's effective scale.
template <Format F>
std::vector<float> dequantize(const quantized_matrix<F>& q) {
  std::vector<float> w(q.codes.size());
  const index_t gw = group_width<F>(q.cols), gpr = groups_per_row<F>(q.cols);
  for (index_t r = 0; r < q.rows; ++r)
    for (index_t c = 0; c < q.cols; ++c)
      w[r * q.cols + c] = F::dequantize(q.codes[r * q.cols + c], q.params[r * gpr + c / gw]);
  return w;
}

// One tensor as written to disk: name suffix, dtype, shape, little-endian bytes.
struct packed_tensor {
  std::string suffix;
  dtype type;
  std::vector<index_t> shape;
  std::vector<std::byte> bytes;
};

namespace detail {
template <class T>
void append_le(std::vector<std::byte>& out, T v) {  // little-endian hosts only (x86-64, aarch64)
  const auto* p = reinterpret_cast<const std::byte*>(&v);
  out.insert(out.end(), p, p + sizeof(T));
}
template <class T>
T read_le(std::span<const std::byte> in, std::size_t i) {
  T v;
  std::memcpy(&v, in.data() + i * sizeof(T), sizeof(T));
  return v;
}
inline std::vector<std::uint8_t> codes_u8(const auto& codes) { return {codes.begin(), codes.end()}; }
}  // namespace detail

// Packs a quantized Linear into exactly the tensors F::stored_tensors lists, in that order. NVFP4 with
// activations also needs the input activation amax (calibration) for its input_global_scale.
template <Format F>
std::vector<packed_tensor> pack(const quantized_matrix<F>& q, float input_amax = 0.0f) {
  std::vector<packed_tensor> out;
  const index_t gpr = groups_per_row<F>(q.cols);
  for (const stored_tensor& t : F::stored_tensors(q.rows, q.cols)) {
    packed_tensor p{std::string(t.suffix), t.type, {}, {}};
    p.shape.assign(t.shape.begin(), t.shape.begin() + t.rank);
    p.bytes.reserve(static_cast<std::size_t>(t.bytes()));
    switch (t.role) {
      case tensor_role::codes:
        if (t.type == dtype::U8 && F::element::bits == 4) {
          for (auto b : pack_nibbles(detail::codes_u8(q.codes))) detail::append_le(p.bytes, b);
        } else if (t.type == dtype::I32) {
          for (auto w : pack_int32_rows(detail::codes_u8(q.codes), q.rows, q.cols, F::element::bits))
            detail::append_le(p.bytes, w);
        } else if (t.type == dtype::BF16) {
          for (auto c : q.codes) detail::append_le(p.bytes, static_cast<std::uint16_t>(c));
        } else if (F::element::bits == 8) {
          for (auto c : q.codes) detail::append_le(p.bytes, static_cast<std::uint8_t>(c));
        } else {  // dense sub-byte stream of a research-only format: one packed row, as bytes
          for (auto w : pack_int32_rows(detail::codes_u8(q.codes), q.rows, q.cols, F::element::bits))
            detail::append_le(p.bytes, w);
          p.bytes.resize(static_cast<std::size_t>(t.bytes()));
        }
        break;
      case tensor_role::block_scale:
        for (const qparams& g : q.params) {
          if (t.type == dtype::BF16) detail::append_le(p.bytes, static_cast<std::uint16_t>(g.scale_code));
          else detail::append_le(p.bytes, static_cast<std::uint8_t>(g.scale_code));
        }
        break;
      case tensor_role::zero_point:
        if constexpr (F::asymmetric) {
          std::vector<std::uint8_t> zu(q.params.size());
          for (std::size_t i = 0; i < zu.size(); ++i)
            zu[i] = static_cast<std::uint8_t>(q.params[i].zero + static_cast<std::int32_t>(F::element::offset));
          for (auto w : pack_int32_columns(zu, q.rows, gpr, F::element::bits)) detail::append_le(p.bytes, w);
        }
        break;
      case tensor_role::global_scale: detail::append_le(p.bytes, q.tensor_scale); break;
      case tensor_role::input_global_scale:
        if (!(input_amax > 0.0f))
          throw packed_error(std::string(F::name) +
                                      " needs the calibrated input activation amax for input_global_scale");
        detail::append_le(p.bytes, F::tensor_scale(input_amax));
        break;
      case tensor_role::shape:
        detail::append_le(p.bytes, static_cast<std::int64_t>(q.rows));
        detail::append_le(p.bytes, static_cast<std::int64_t>(q.cols));
        break;
      case tensor_role::tile_scale:  // a block-FP8 source's own scales (FP8_SOURCE): copied by the export, not packed
        throw packed_error(std::string(F::name) + " keeps a source's tile scales; pq does not pack them");
    }
    if (static_cast<index_t>(p.bytes.size()) != t.bytes())
      throw packed_error(std::string(F::name) + ": packed " + p.suffix + " has the wrong size");
    out.push_back(std::move(p));
  }
  return out;
}

// Reads back what pack wrote (tensors by suffix, in any order) for a Linear of the given shape.
// Shapes and dtypes must match F::stored_tensors exactly; a mismatch names the tensor.
template <Format F>
quantized_matrix<F> unpack(std::span<const packed_tensor> tensors, index_t rows, index_t cols) {
  quantized_matrix<F> q;
  q.rows = rows;
  q.cols = cols;
  const index_t gpr = groups_per_row<F>(cols);
  q.params.assign(static_cast<std::size_t>(rows * gpr), qparams{});
  for (const stored_tensor& t : F::stored_tensors(rows, cols)) {
    const packed_tensor* p = nullptr;
    for (const auto& c : tensors)
      if (c.suffix == t.suffix) p = &c;
    const std::vector<index_t> shape(t.shape.begin(), t.shape.begin() + t.rank);
    if (!p) throw packed_error(std::string(F::name) + ": missing tensor " + std::string(t.suffix));
    if (p->type != t.type || p->shape != shape || static_cast<index_t>(p->bytes.size()) != t.bytes())
      throw packed_error(std::string(F::name) + ": tensor " + std::string(t.suffix) +
                                  " has the wrong dtype or shape");
    const std::span<const std::byte> b = p->bytes;
    switch (t.role) {
      case tensor_role::codes: {
        std::vector<std::uint8_t> c8;
        if (t.type == dtype::U8 && F::element::bits == 4) {
          std::vector<std::uint8_t> raw(b.size());
          std::memcpy(raw.data(), b.data(), b.size());
          c8 = unpack_nibbles(raw);
        } else if (t.type == dtype::I32 || (F::element::bits != 8 && t.type != dtype::BF16)) {
          std::vector<std::int32_t> words((b.size() + 3) / 4, 0);
          std::memcpy(words.data(), b.data(), b.size());
          c8 = unpack_int32_rows(words, rows, cols, F::element::bits);
        } else if (t.type == dtype::BF16) {
          q.codes.resize(static_cast<std::size_t>(rows * cols));
          for (std::size_t i = 0; i < q.codes.size(); ++i) q.codes[i] = detail::read_le<std::uint16_t>(b, i);
          break;
        } else {
          c8.resize(b.size());
          std::memcpy(c8.data(), b.data(), b.size());
        }
        q.codes.assign(c8.begin(), c8.end());
        break;
      }
      case tensor_role::block_scale:
        for (std::size_t i = 0; i < q.params.size(); ++i)
          q.params[i].scale_code = t.type == dtype::BF16 ? detail::read_le<std::uint16_t>(b, i)
                                                         : detail::read_le<std::uint8_t>(b, i);
        break;
      case tensor_role::zero_point:
        if constexpr (F::asymmetric) {
          std::vector<std::int32_t> words(b.size() / 4);
          std::memcpy(words.data(), b.data(), b.size());
          const auto zu = unpack_int32_columns(words, rows, gpr, F::element::bits);
          for (std::size_t i = 0; i < zu.size(); ++i)
            q.params[i].zero = static_cast<std::int32_t>(zu[i]) - static_cast<std::int32_t>(F::element::offset);
        }
        break;
      case tensor_role::global_scale: q.tensor_scale = detail::read_le<float>(b, 0); break;
      case tensor_role::input_global_scale: break;
      case tensor_role::shape:
        if (detail::read_le<std::int64_t>(b, 0) != rows || detail::read_le<std::int64_t>(b, 1) != cols)
          throw packed_error(std::string(F::name) + ": weight_shape does not match the Linear");
        break;
      case tensor_role::tile_scale:  // decoded by io::dequantize_fp8_block, not into per-row groups
        throw packed_error(std::string(F::name) + " keeps a source's tile scales; pq does not unpack them");
    }
  }
  if constexpr (requires { typename F::scale_codec; }) {
    for (auto& g : q.params) {
      g.scale = F::scale_codec::decode(g.scale_code);
      if constexpr (F::has_tensor_scale) g.scale /= q.tensor_scale;
    }
  }
  return q;
}

}  // namespace pq
