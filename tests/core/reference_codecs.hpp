// The codecs' encoders as they were before the branch-free rewrite: bit arithmetic with one branch per
// input class, written from the definition (RNE on the quantum of the target binade, saturation, NaN
// policy). Kept here, outside the library, as the independent reference the branch-free encoders and the
// hardware converts are proven equal to.
#pragma once
#include <bit>
#include <cstdint>

#include <pq/core/bits.hpp>
#include <pq/core/integer.hpp>
#include <pq/core/minifloat.hpp>

namespace pq::reference {

template <class C>
PQ_HD constexpr std::uint32_t encode(float x) {
  constexpr int Man = C::mantissa_bits;
  const std::uint32_t u = float_bits(x);
  const std::uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return C::has_nan ? C::nan_code : C::max_code;
  if ((u >> 31) && !C::is_signed) return 0u;
  const std::uint32_t sign = (u >> 31) ? C::sign_mask : 0u;
  if (bits_float(a) >= C::max_finite) return sign | C::max_code;
  if (a == 0u) return sign;
  const int e = ilog2(bits_float(a));
  const int fexp = static_cast<int>(a >> 23);
  const std::uint32_t mant24 = fexp == 0 ? (a & 0x7fffffu) << (-126 - e) : ((a & 0x7fffffu) | 0x800000u);
  const int e_target = e > C::min_exponent ? e : C::min_exponent;
  const int shift = 23 + e_target - Man - e;
  std::uint32_t q = 0;
  if (shift < 25) {
    q = mant24 >> shift;
    const std::uint32_t rem = mant24 & ((1u << shift) - 1u);
    const std::uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1u))) ++q;
  }
  if constexpr (C::has_subnormals) {
    return sign | ((static_cast<std::uint32_t>(e_target + C::bias - 1) << Man) + q);
  } else {
    if (q < (1u << Man)) q = 1u << Man;
    return sign | ((static_cast<std::uint32_t>(e_target + C::bias) << Man) + q - (1u << Man));
  }
}

// minifloat::decode before the branch-free rewrite.
template <class C>
constexpr float decode(std::uint32_t code) {
  constexpr int Man = C::mantissa_bits, Exp = C::exponent_bits, bias = C::bias;
  const std::uint32_t mag = code & C::magnitude_mask;
  const bool negative = (code & C::sign_mask) != 0u;
  const int efield = static_cast<int>(mag >> Man);
  const int m = static_cast<int>(mag & ((1u << Man) - 1u));
  float v;
  if (C::is_nan_code(code)) {
    return quiet_nan();
  } else if (C::special_values == specials::ieee && efield == (1 << Exp) - 1) {
    v = infinity();
  } else if (C::has_subnormals && efield == 0) {
    v = static_cast<float>(m) * pow2(1 - bias - Man);
  } else {
    v = static_cast<float>((1 << Man) + m) * pow2(efield - bias - Man);
  }
  return negative ? -v : v;
}


// signed_int<B>::encode before the rewrite: clamp, then round_half_even on the bits.
template <class I>
constexpr std::uint32_t encode_int(float y) {
  if (is_nan(y)) return I::offset;
  const float c = y < static_cast<float>(I::min) ? static_cast<float>(I::min)
                : y > static_cast<float>(I::max) ? static_cast<float>(I::max) : y;
  return static_cast<std::uint32_t>(static_cast<std::int32_t>(round_half_even(c)) + static_cast<std::int32_t>(I::offset));
}

}  // namespace pq::reference
