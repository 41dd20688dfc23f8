// pq/formats/int.hpp: integer weight-only formats (compressed-tensors pack-quantized): INT4 with a BF16
// scale per 128 columns, symmetric or with an INT4 zero point, and INT8 with a BF16 scale per row.
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <string_view>

#include <pq/core/bf16.hpp>
#include <pq/core/integer.hpp>
#include <pq/formats/format.hpp>

namespace pq {

// The smallest BF16 scale >= s (a zero scale becomes 2^-7, as compressed-tensors does). Rounding up
// rather than to nearest keeps every element of the group within half a step of its code: with
// compressed-tensors' RNE the INT8 extreme can saturate by 0.75 of a step.
PQ_HD constexpr std::uint32_t bf16_scale_code(float s) {
  std::uint32_t code = bf16::encode(s);
  if (bf16::decode(code) < s) ++code;  // positive, finite: the next code is the next larger value
  return bf16::decode(code) == 0.0f ? bf16::encode(0x1p-7f) : code;
}

// Symmetric: scale = amax / ((qmax - qmin) / 2), i.e. amax/7.5 for 4 bits, amax/127.5 for 8 bits
// (compressed-tensors' range convention: the top of the range maps to qmax + 0.5), stored as BF16.
template <class Int>
PQ_HD constexpr qparams int_symmetric_params(float amax) {
  constexpr float half_range = (static_cast<float>(Int::max) - static_cast<float>(Int::min)) / 2.0f;
  const std::uint32_t code = bf16_scale_code(amax / half_range);
  return {code, bf16::decode(code), 0};
}

// Asymmetric: the range [min(lo,0), max(hi,0)] spread over 2^b - 1 steps; zero point
// zp = RNE(clamp(qmin - mn/scale, qmin, qmax)).
template <class Int>
PQ_HD constexpr qparams int_asymmetric_params(float lo, float hi) {
  const float mn = lo < 0.0f ? lo : 0.0f;
  const float mx = hi > 0.0f ? hi : 0.0f;
  const std::uint32_t code = bf16_scale_code((mx - mn) / static_cast<float>(Int::max - Int::min));
  const float scale = bf16::decode(code);
  const std::int32_t zero = Int::value(Int::encode(static_cast<float>(Int::min) - mn / scale));
  return {code, scale, zero};
}

namespace detail {
template <class Int, index_t Group, bool Asymmetric>
struct int_policy {
  using element = Int;
  using scale_codec = bf16;
  using code_type = std::uint8_t;  // the offset code u = q + 2^(b-1)
  static constexpr index_t group_size = Group;
  static constexpr index_t column_multiple = Group ? Group : 1;
  static constexpr bool has_tensor_scale = false;
  static constexpr bool asymmetric = Asymmetric;

  PQ_HD static constexpr float tensor_scale(float) { return 1.0f; }
  PQ_HD static constexpr qparams group_params(float lo, float hi, float) {
    if constexpr (Asymmetric) return int_asymmetric_params<Int>(lo, hi);
    else return int_symmetric_params<Int>(max_abs(lo, hi));
  }
  PQ_HD static constexpr std::uint32_t quantize(float x, qparams p) {
    return Int::encode(x / p.scale + static_cast<float>(p.zero));
  }
  PQ_HD static constexpr float dequantize(std::uint32_t code, qparams p) {
    return static_cast<float>(Int::value(code) - p.zero) * p.scale;
  }

  static constexpr index_t scale_cols(index_t cols) { return Group ? cols / Group : 1; }
  static constexpr auto stored_tensors(index_t rows, index_t cols) {
    constexpr std::size_t n = Asymmetric ? 4 : 3;
    std::array<stored_tensor, n> t{{
        {tensor_role::codes, "weight_packed", dtype::I32, {rows, (cols * Int::bits + 31) / 32}, 2},
        {tensor_role::block_scale, "weight_scale", dtype::BF16, {rows, scale_cols(cols)}, 2},
        {tensor_role::shape, "weight_shape", dtype::I64, {2, 0}, 1},
    }};
    if constexpr (Asymmetric)
      t[3] = {tensor_role::zero_point, "weight_zero_point", dtype::I32,
              {(rows * Int::bits + 31) / 32, scale_cols(cols)}, 2};
    return t;
  }
  static constexpr std::optional<ct_scheme> scheme = ct_scheme{
      "pack-quantized",
      {Int::bits, "int", Group ? "group" : "channel", static_cast<int>(Group), !Asymmetric, ct_dynamic::no, "",
       "memoryless_minmax"},
      std::nullopt};
};
}  // namespace detail

struct INT4_G128 : detail::int_policy<int4, 128, false> {
  static constexpr std::string_view name = "INT4_G128";
};
struct INT4_G128_ASYM : detail::int_policy<int4, 128, true> {
  static constexpr std::string_view name = "INT4_G128_ASYM";
};
struct INT8_CHANNEL : detail::int_policy<int8, 0, false> {
  static constexpr std::string_view name = "INT8_CHANNEL";
};

// The spec's numbers (shared/spec/compressed-tensors.md §2, §3.5): codes u = q + 2^(b-1) in int32 words,
// BF16 scales per 128 columns (INT4) or per row (INT8), weight_shape I64 [2], 4-bit zero points packed down
// the rows as I32 [ceil(N/8), K/128]; symmetric scale amax/7.5 (4 bits) and amax/127.5 (8 bits).
static_assert(Format<INT4_G128> && Format<INT4_G128_ASYM> && Format<INT8_CHANNEL>);
static_assert(int4::min == -8 && int4::max == 7 && int4::offset == 8 && int8::offset == 128);
static_assert(INT4_G128::group_size == 128 && INT8_CHANNEL::group_size == 0);
static_assert(stored_bytes<INT4_G128>(4096, 4096) == 4096 * 4096 / 2 + 4096 * 32 * 2 + 16);
static_assert(stored_bytes<INT4_G128_ASYM>(4096, 4096) == stored_bytes<INT4_G128>(4096, 4096) + 512 * 32 * 4);
static_assert(stored_bytes<INT8_CHANNEL>(4096, 4096) == 4096 * 4096 + 4096 * 2 + 16);
static_assert(int_symmetric_params<int4>(7.5f).scale == 1.0f && int_symmetric_params<int8>(127.5f).scale == 1.0f);

}  // namespace pq
