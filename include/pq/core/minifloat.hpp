// pq/core/minifloat.hpp: one generic small-float codec, described by its bits, and the named element and
// scale types built from it (E2M1, E2M3, E3M2, E4M3, E5M2, UE4M3, UE8M0).
#pragma once
#include <cstdint>
#include <string_view>
#include <type_traits>

#include <pq/core/bits.hpp>

namespace pq {

// Which codes are not finite numbers.
enum class specials : std::uint8_t {
  ieee,      // all-ones exponent: infinity (mantissa 0) or NaN (E5M2)
  nan_only,  // only the all-ones code is NaN, no infinity (the "fn" types: E4M3, UE4M3, UE8M0)
  none,      // every code is a finite number (E2M1, E2M3, E3M2)
};

#if PQ_DEVICE_CODE()
namespace detail {
// PTX converts with the codecs' own semantics for finite and infinite inputs (RNE, saturating to the
// largest finite value); the caller substitutes its NaN policy. The result is the low byte of the pair.
__device__ inline std::uint32_t cvt_e4m3(float x) {
  unsigned short pair;
  asm("{cvt.rn.satfinite.e4m3x2.f32 %0, %2, %1;}\n" : "=h"(pair) : "f"(x), "f"(0.0f));
  return pair & 0xffu;
}
__device__ inline std::uint32_t cvt_e5m2(float x) {
  unsigned short pair;
  asm("{cvt.rn.satfinite.e5m2x2.f32 %0, %2, %1;}\n" : "=h"(pair) : "f"(x), "f"(0.0f));
  return pair & 0xffu;
}
#if defined(__CUDA_ARCH_FAMILY_SPECIFIC__) && __CUDA_ARCH_FAMILY_SPECIFIC__ >= 1000
__device__ inline std::uint32_t cvt_e2m1(float x) {
  unsigned short pair;
  asm("{ .reg .b8 t;\n cvt.rn.satfinite.e2m1x2.f32 t, %2, %1;\n mov.b16 %0, {t, 0}; }\n"
      : "=h"(pair) : "f"(x), "f"(0.0f));
  return pair & 0xfu;
}
#endif
}  // namespace detail
#endif

// A floating-point code of `Exp` exponent bits and `Man` mantissa bits, optionally signed.
// Everything else (bias, largest finite value, masks) is derived. Conversion from float is
// round-to-nearest-even with saturation to the largest finite magnitude (inf saturates too). A NaN input
// gives the NaN code where there is one, else +max. For unsigned types a negative input gives code 0.
// `Subnormals = false` makes exponent field 0 an ordinary binade (UE8M0 has no zero: code 0 is 2^-127).
template <int Exp, int Man, bool Signed, specials Specials, bool Subnormals = true>
struct minifloat {
  static_assert(Exp >= 1 && Exp <= 8 && Man >= 0 && Man <= 10, "not a small float");
  static constexpr int exponent_bits = Exp;
  static constexpr int mantissa_bits = Man;
  static constexpr bool is_signed = Signed;
  static constexpr specials special_values = Specials;
  static constexpr bool has_subnormals = Subnormals;
  static constexpr int bits = Exp + Man + (Signed ? 1 : 0);
  static constexpr int bias = (1 << (Exp - 1)) - 1;
  static constexpr std::uint32_t magnitude_mask = (1u << (Exp + Man)) - 1u;
  static constexpr std::uint32_t sign_mask = Signed ? (1u << (Exp + Man)) : 0u;
  static constexpr std::uint32_t code_count = 1u << bits;
  // Largest finite magnitude code.
  static constexpr std::uint32_t max_code = Specials == specials::ieee
      ? ((((1u << Exp) - 1u) << Man) - 1u)
      : Specials == specials::nan_only ? magnitude_mask - 1u : magnitude_mask;
  static constexpr bool has_nan = Specials != specials::none;
  static constexpr bool has_infinity = Specials == specials::ieee;
  static constexpr std::uint32_t nan_code = Specials == specials::ieee
      ? (((1u << Exp) - 1u) << Man) | (Man > 0 ? 1u << (Man - 1) : 0u)
      : magnitude_mask;
  // Exponent of the lowest binade's leading bit.
  static constexpr int min_exponent = Subnormals ? 1 - bias : -bias;

  PQ_HD static constexpr bool is_nan_code(std::uint32_t code) {
    const std::uint32_t mag = code & magnitude_mask;
    if constexpr (Specials == specials::ieee)
      return (mag >> Man) == (1u << Exp) - 1u && (mag & ((1u << Man) - 1u)) != 0u;
    else if constexpr (Specials == specials::nan_only)
      return mag == magnitude_mask;
    else
      return false;
  }

  // Branch-free: a normal code's float bits are its fields moved into place (every codec's normal values
  // are normal floats); the lowest binade is its integer significand times a constant power of two.
  PQ_HD static constexpr float decode(std::uint32_t code) {
    constexpr std::uint32_t mmask = (1u << Man) - 1u;
    constexpr float lowest_quantum = pow2((Subnormals ? 1 : 0) - bias - Man);
    const std::uint32_t mag = code & magnitude_mask;
    const std::uint32_t efield = mag >> Man, m = mag & mmask;
    const std::uint32_t normal = ((efield + static_cast<std::uint32_t>(127 - bias)) << 23) | (m << (23 - Man));
    const std::uint32_t low = float_bits(static_cast<float>(Subnormals ? m : m + (1u << Man)) * lowest_quantum);
    const std::uint32_t is_low = 0u - static_cast<std::uint32_t>(efield == 0u);  // a mask: see encode_portable
    std::uint32_t bits = (low & is_low) | (normal & ~is_low);
    if constexpr (Specials == specials::ieee) bits = efield == (1u << Exp) - 1u ? 0x7f800000u : bits;
    bits |= (code & sign_mask) != 0u ? 0x80000000u : 0u;
    return bits_float(is_nan_code(code) ? 0x7fc00000u : bits);
  }

  static constexpr float max_finite = decode(max_code);
  static constexpr float min_positive = decode(1u) > 0.0f ? decode(1u) : decode(0u);

  // Branch-free: both roundings (in the target's lowest binade, and in a normal binade) are computed and
  // one is selected, so a vector unit or a warp runs it without divergence. Equal, bit for bit, to the
  // definition above over every float (tests/core/reference_codecs.hpp is the definition written as
  // branches; tests/core/test_minifloat.cpp proves the two equal).
  //  - normal binades: RNE of the float's 23-bit mantissa to Man bits is one integer addition on the bits
  //    (half a quantum minus one, plus the kept part's last bit), the carry rolling into the exponent;
  //  - the lowest binade (subnormals of the target): the FPU's own RNE, adding 2^(min_exponent + 23 - Man),
  //    whose last mantissa bit is one quantum of that binade, so the sum's low bits are the code.
  // Formats without subnormals (UE8M0) keep the branching form: a scale codec no kernel encodes per element.
  PQ_HD static constexpr std::uint32_t encode(float x) {
    if constexpr (Subnormals && Man >= 1) {
#if PQ_DEVICE_CODE()
      if (!std::is_constant_evaluated()) {
        if (const std::uint32_t hw = hardware_encode(x); hw != no_hardware)
          return (float_bits(x) & 0x7fffffffu) > 0x7f800000u ? (has_nan ? nan_code : max_code) : hw;
      }
#endif
      return encode_portable(x);
    } else {
      return encode_branching(x);
    }
  }

#if PQ_DEVICE_CODE()
  // The target's convert instruction for this codec, or no_hardware. Hopper (sm_89+) converts to E4M3 and
  // E5M2; E2M1 needs the sm_100 family. NaN is left to encode (the instructions keep a NaN's sign).
  static constexpr std::uint32_t no_hardware = 0xffffffffu;
  __device__ static std::uint32_t hardware_encode([[maybe_unused]] float x) {
#if __CUDA_ARCH__ >= 890
    if constexpr (Exp == 4 && Man == 3 && Signed && Specials == specials::nan_only) return detail::cvt_e4m3(x);
    if constexpr (Exp == 5 && Man == 2 && Signed && Specials == specials::ieee) return detail::cvt_e5m2(x);
#endif
#if defined(__CUDA_ARCH_FAMILY_SPECIFIC__) && __CUDA_ARCH_FAMILY_SPECIFIC__ >= 1000
    if constexpr (Exp == 2 && Man == 1 && Signed && Specials == specials::none) return detail::cvt_e2m1(x);
#endif
    return no_hardware;
  }
#endif

  PQ_HD static constexpr std::uint32_t encode_portable(float x)
    requires(Subnormals && Man >= 1)
  {
    constexpr std::uint32_t lowest_normal = static_cast<std::uint32_t>(min_exponent + 127) << 23;  // 2^min_exponent
    constexpr std::uint32_t magic_bits = static_cast<std::uint32_t>(min_exponent + 127 + 23 - Man) << 23;
    constexpr std::uint32_t rebias = static_cast<std::uint32_t>(127 - bias) << 23;
    const std::uint32_t u = float_bits(x);
    const std::uint32_t a = u & 0x7fffffffu;
    // Selections are masks, not ?:, wherever an arm needs the floating-point addition: a compiler keeping
    // floating-point exceptions exact may not speculate that addition into a branch, so a ?: there
    // would stop the vectoriser (GCC: "control flow in loop").
    const std::uint32_t low = 0u - static_cast<std::uint32_t>(a < lowest_normal);
    const std::uint32_t nan = 0u - static_cast<std::uint32_t>(a > 0x7f800000u);
    // Zero in place of a large input keeps the addition finite (and constant-evaluable).
    const std::uint32_t sub = float_bits(add_rn(bits_float(a & low), bits_float(magic_bits))) - magic_bits;
    const std::uint32_t odd = (a >> (23 - Man)) & 1u;
    const std::uint32_t norm = (a - rebias + ((1u << (22 - Man)) - 1u) + odd) >> (23 - Man);
    std::uint32_t mag = (sub & low) | (norm & ~low);  // norm wraps harmlessly when not selected
    mag = mag < max_code ? mag : max_code;  // saturation, infinity included (it has the largest bits)
    const std::uint32_t negative = 0u - (u >> 31);
    const std::uint32_t code = Signed ? (negative & sign_mask) | mag : mag & ~negative;
    return (code & ~nan) | ((has_nan ? nan_code : max_code) & nan);
  }

  // The definition, one branch per input class (also the path of formats without subnormals).
  PQ_HD static constexpr std::uint32_t encode_branching(float x) {
    const std::uint32_t u = float_bits(x);
    const std::uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return has_nan ? nan_code : max_code;
    if ((u >> 31) && !Signed) return 0u;
    const std::uint32_t sign = (u >> 31) ? sign_mask : 0u;
    if (bits_float(a) >= max_finite) return sign | max_code;
    if (a == 0u) return sign;  // +-0 (for UE8M0, code 0 is its smallest value)
    // value = mant24 * 2^(e - 23) with bit 23 of mant24 set (float subnormals normalised)
    const int e = ilog2(bits_float(a));
    const int fexp = static_cast<int>(a >> 23);
    const std::uint32_t mant24 = fexp == 0 ? (a & 0x7fffffu) << (-126 - e) : ((a & 0x7fffffu) | 0x800000u);
    const int e_target = e > min_exponent ? e : min_exponent;  // binade the result lives in
    const int shift = 23 + e_target - Man - e;                 // >= 23 - Man > 0
    std::uint32_t q = 0;
    if (shift < 25) {
      q = mant24 >> shift;
      const std::uint32_t rem = mant24 & ((1u << shift) - 1u);
      const std::uint32_t half = 1u << (shift - 1);
      if (rem > half || (rem == half && (q & 1u))) ++q;
    }
    // q counts quanta of 2^(e_target - Man); a carry into the next binade falls out of the addition.
    if constexpr (Subnormals) {
      return sign | ((static_cast<std::uint32_t>(e_target + bias - 1) << Man) + q);
    } else {
      if (q < (1u << Man)) q = 1u << Man;  // below the smallest value: saturate to it
      return sign | ((static_cast<std::uint32_t>(e_target + bias) << Man) + q - (1u << Man));
    }
  }

  // Round a float to the nearest representable value (encode then decode).
  PQ_HD static constexpr float round(float x) { return decode(encode(x)); }
};

// Named codecs. The names are the OCP / CUTLASS spellings.
struct e2m1 : minifloat<2, 1, true, specials::none> { static constexpr std::string_view name = "E2M1"; };
struct e2m3 : minifloat<2, 3, true, specials::none> { static constexpr std::string_view name = "E2M3"; };
struct e3m2 : minifloat<3, 2, true, specials::none> { static constexpr std::string_view name = "E3M2"; };
struct e4m3 : minifloat<4, 3, true, specials::nan_only> { static constexpr std::string_view name = "E4M3"; };
struct e5m2 : minifloat<5, 2, true, specials::ieee> { static constexpr std::string_view name = "E5M2"; };
struct ue4m3 : minifloat<4, 3, false, specials::nan_only> { static constexpr std::string_view name = "UE4M3"; };
struct ue8m0 : minifloat<8, 0, false, specials::nan_only, false> { static constexpr std::string_view name = "UE8M0"; };

}  // namespace pq
