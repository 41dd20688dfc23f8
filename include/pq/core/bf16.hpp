// pq/core/bf16.hpp: bfloat16, the top half of an IEEE float32, rounded to nearest even.
#pragma once
#include <cstdint>
#include <string_view>

#include <pq/core/bits.hpp>

namespace pq {

struct bf16 {
  static constexpr std::string_view name = "BF16";
  static constexpr int bits = 16;
  static constexpr bool is_signed = true;
  static constexpr std::uint32_t code_count = 1u << 16;

  // RNE on bit 16, as torch's float -> bfloat16; NaN stays a (quiet) NaN, overflow gives infinity.
  PQ_HD static constexpr std::uint32_t encode(float x) {
    const std::uint32_t u = float_bits(x);
    const std::uint32_t rounding = 0x7fffu + ((u >> 16) & 1u);
    const std::uint32_t rounded = ((u + rounding) >> 16) & 0xffffu;
    return (u & 0x7fffffffu) > 0x7f800000u ? ((u >> 16) | 0x40u) & 0xffffu : rounded;
  }
  PQ_HD static constexpr float decode(std::uint32_t code) { return bits_float((code & 0xffffu) << 16); }
  PQ_HD static constexpr float round(float x) { return decode(encode(x)); }
  PQ_HD static constexpr bool is_nan_code(std::uint32_t code) { return (code & 0x7fffu) > 0x7f80u; }
};

}  // namespace pq
