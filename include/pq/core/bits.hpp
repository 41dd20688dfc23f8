// pq/core/bits.hpp: exact bit-level float helpers shared by host and device (bit casts, powers of two,
// round-half-even of a float to an integer).
#pragma once
#include <bit>
#include <cstdint>
#include <type_traits>

#include <pq/config.hpp>

namespace pq {

PQ_HD constexpr std::uint32_t float_bits(float x) { return std::bit_cast<std::uint32_t>(x); }
PQ_HD constexpr float bits_float(std::uint32_t u) { return std::bit_cast<float>(u); }

PQ_HD constexpr bool is_nan(float x) { return (float_bits(x) & 0x7fffffffu) > 0x7f800000u; }
PQ_HD constexpr bool is_finite(float x) { return (float_bits(x) & 0x7f800000u) != 0x7f800000u; }
PQ_HD constexpr float abs_f(float x) { return bits_float(float_bits(x) & 0x7fffffffu); }
PQ_HD constexpr float quiet_nan() { return bits_float(0x7fc00000u); }
PQ_HD constexpr float infinity() { return bits_float(0x7f800000u); }

// a + b rounded to nearest even, never fused with a neighbouring multiply and never flushed to zero by
// fast-math device flags: the branch-free codecs take their rounding from this one addition.
PQ_HD constexpr float add_rn(float a, float b) {
#if PQ_DEVICE_CODE()
  if (!std::is_constant_evaluated()) return __fadd_rn(a, b);
#endif
  return a + b;
}

// 2^k exactly, for every k whose power of two is a float (subnormals included, -149 <= k <= 127).
PQ_HD constexpr float pow2(int k) {
  if (k > 127) return infinity();
  if (k >= -126) return bits_float(static_cast<std::uint32_t>(k + 127) << 23);
  if (k >= -149) return bits_float(1u << (k + 149));
  return 0.0f;
}

// floor(log2 |x|) of a finite non-zero float, subnormals included.
PQ_HD constexpr int ilog2(float x) {
  const std::uint32_t u = float_bits(x) & 0x7fffffffu;
  const int e = static_cast<int>(u >> 23);
  if (e != 0) return e - 127;
  return -127 - std::countl_zero(u << 9);  // subnormal: position of the leading mantissa bit
}

// Round a float to the nearest integer, ties to even, exactly (integer arithmetic on the bits, so the
// result does not depend on the floating-point environment or compiler flags). |x| < 2^31 expected.
PQ_HD constexpr float round_half_even(float x) {
  const std::uint32_t u = float_bits(x);
  const std::uint32_t a = u & 0x7fffffffu;
  const int e = static_cast<int>(a >> 23) - 127;
  if (e >= 23 || a > 0x7f800000u) return x;  // already integral, inf or nan
  if (e < -1) return bits_float(u & 0x80000000u);  // |x| < 0.5
  const std::uint32_t mant = (a & 0x7fffffu) | 0x800000u;
  const int shift = 23 - e;  // 1..24
  std::uint32_t q = mant >> shift;
  const std::uint32_t rem = mant & ((1u << shift) - 1u);
  const std::uint32_t half = 1u << (shift - 1);
  if (rem > half || (rem == half && (q & 1u))) ++q;
  const float r = static_cast<float>(q);
  return (u >> 31) ? -r : r;
}

}  // namespace pq
