// pq/core/widen.hpp: the element types checkpoints store weights in (bf16, fp16, fp32) as plain bit
// holders, widened exactly to float and narrowed back with RNE, on the host and in kernels alike.
#pragma once
#include <cstdint>
#include <type_traits>

#include <pq/config.hpp>
#include <pq/core/bf16.hpp>
#include <pq/core/minifloat.hpp>

#if defined(__CUDACC__)
#include <cuda_fp16.h>
#endif

namespace pq {

enum class weight_dtype : std::uint8_t { bf16, fp16, fp32 };
struct bf16_bits { std::uint16_t bits; };
struct fp16_bits { std::uint16_t bits; };
using fp16_codec = minifloat<5, 10, true, specials::ieee>;  // IEEE binary16

PQ_HD constexpr float to_float(float x) { return x; }
PQ_HD constexpr float to_float(bf16_bits x) { return bits_float(static_cast<std::uint32_t>(x.bits) << 16); }
PQ_HD constexpr float to_float(fp16_bits x) {
#if PQ_DEVICE_CODE()
  if (!std::is_constant_evaluated()) return __half2float(__ushort_as_half(x.bits));
#endif
  return fp16_codec::decode(x.bits);
}
// float -> binary16 RNE with overflow to infinity and NaN kept (fp16_codec saturates; IEEE casts do not).
PQ_HD constexpr std::uint32_t fp16_encode(float x) {
  const std::uint32_t u = float_bits(x), a = u & 0x7fffffffu, sign = (u >> 16) & 0x8000u;
  if (a > 0x7f800000u) return sign | 0x7e00u;
  if (a >= 0x477ff000u) return sign | 0x7c00u;  // >= 65520 rounds past the largest finite (65504)
  return fp16_codec::encode(x);
}

// Narrowing for dequantized output: RNE, as torch's casts.
template <class Out> PQ_HD constexpr Out from_float(float x) {
  if constexpr (std::is_same_v<Out, float>) return x;
  else if constexpr (std::is_same_v<Out, bf16_bits>) return {static_cast<std::uint16_t>(bf16::encode(x))};
  else {
#if PQ_DEVICE_CODE()
    if (!std::is_constant_evaluated()) return {__half_as_ushort(__float2half_rn(x))};
#endif
    return {static_cast<std::uint16_t>(fp16_encode(x))};
  }
}
template <class In> constexpr weight_dtype dtype_of();
template <> constexpr weight_dtype dtype_of<float>() { return weight_dtype::fp32; }
template <> constexpr weight_dtype dtype_of<bf16_bits>() { return weight_dtype::bf16; }
template <> constexpr weight_dtype dtype_of<fp16_bits>() { return weight_dtype::fp16; }
constexpr index_t dtype_size(weight_dtype t) { return t == weight_dtype::fp32 ? 4 : 2; }

// Calls f(In{}) with the element type of a run-time dtype.
template <class Fn> decltype(auto) visit_dtype(weight_dtype t, Fn&& f) {
  switch (t) {
    case weight_dtype::bf16: return f(bf16_bits{});
    case weight_dtype::fp16: return f(fp16_bits{});
    case weight_dtype::fp32: break;
  }
  return f(float{});
}

}  // namespace pq
