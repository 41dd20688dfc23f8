// pq/core/integer.hpp: two's-complement integer codes of a given width (INT4, INT8), with the offset
// ("unsigned") code u = q + 2^(bits-1) that compressed-tensors packs.
#pragma once
#include <cstdint>
#include <string_view>

#include <pq/core/bits.hpp>

namespace pq {

template <int Bits>
struct signed_int {
  static_assert(Bits >= 2 && Bits <= 8);
  static constexpr int bits = Bits;
  static constexpr bool is_signed = true;
  static constexpr std::int32_t min = -(1 << (Bits - 1));
  static constexpr std::int32_t max = (1 << (Bits - 1)) - 1;
  static constexpr std::uint32_t offset = 1u << (Bits - 1);
  static constexpr std::uint32_t code_count = 1u << Bits;
  static constexpr float max_finite = static_cast<float>(max);

  // Offset code u in [0, 2^bits) of the integer nearest to y (ties to even), clamped to [min, max].
  // A NaN gives the code of 0. Branch-free: |y| is first capped at 2^bits (a NaN becomes 0) with bit
  // masks, then adding 1.5·2^23 leaves the integer, rounded by the FPU's RNE, in the sum's low mantissa
  // bits; the clamp to [min, max] follows in integers (rounding is monotonic and the bounds are integers,
  // so clamping after rounding equals rounding after clamping). Masks rather than ?: around the addition
  // keep it vectorisable (see minifloat::encode_portable).
  PQ_HD static constexpr std::uint32_t encode(float y) {
    constexpr float magic = 0x1.8p23f;
    constexpr std::uint32_t cap = static_cast<std::uint32_t>(127 + Bits) << 23;  // 2^Bits
    const std::uint32_t u = float_bits(y), a = u & 0x7fffffffu;
    const std::uint32_t nan = 0u - static_cast<std::uint32_t>(a > 0x7f800000u);
    const std::uint32_t big = 0u - static_cast<std::uint32_t>(a >= cap);
    const std::uint32_t capped = (((u & 0x80000000u) | cap) & big) | (u & ~big);
    const std::int32_t q = static_cast<std::int32_t>(float_bits(add_rn(bits_float(capped & ~nan), magic)) - float_bits(magic));
    const std::int32_t c = q < min ? min : q > max ? max : q;
    return static_cast<std::uint32_t>(c + static_cast<std::int32_t>(offset));
  }
  PQ_HD static constexpr std::int32_t value(std::uint32_t code) {
    return static_cast<std::int32_t>(code & (code_count - 1u)) - (1 << (Bits - 1));
  }
  PQ_HD static constexpr float decode(std::uint32_t code) { return static_cast<float>(value(code)); }
  PQ_HD static constexpr float round(float y) { return decode(encode(y)); }
};

struct int4 : signed_int<4> { static constexpr std::string_view name = "INT4"; };
struct int8 : signed_int<8> { static constexpr std::string_view name = "INT8"; };

}  // namespace pq
