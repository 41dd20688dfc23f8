// pq/formats/nvfp4.hpp: NVFP4 (E2M1 elements, E4M3 scale per 16, fp32 global scale per decision unit),
// with activations (W4A4, exported with input_global_scale) and weight-only (NVFP4A16).
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <string_view>

#include <pq/core/minifloat.hpp>
#include <pq/formats/format.hpp>

namespace pq {

// g = 448*6 / amax over the whole decision unit (all fused siblings), the divisor stored as
// weight_global_scale. Computed in fp32; amax of 0 (or a non-finite result) gives 1.
PQ_HD constexpr float nvfp4_global_scale(float unit_amax) {
  if (!(unit_amax > 0.0f)) return 1.0f;
  const float g = e4m3::max_finite * e2m1::max_finite / (unit_amax > 0x1p-126f ? unit_amax : 0x1p-126f);
  return is_finite(g) ? g : 1.0f;
}

// Block scale: s_b = E4M3(g * amax_b / 6), RNE and saturating; a zero scale becomes 0.125 (0x20) so that
// every stored scale is positive. The effective multiplier is s_b / g.
PQ_HD constexpr qparams nvfp4_block_params(float block_amax, float global_scale) {
  std::uint32_t code = e4m3::encode(global_scale * (block_amax / e2m1::max_finite));
  if (e4m3::decode(code) == 0.0f) code = e4m3::encode(0.125f);
  return {code, e4m3::decode(code) / global_scale, 0};
}

namespace detail {
template <bool Activations>
struct nvfp4_policy {
  using element = e2m1;
  using scale_codec = e4m3;
  using code_type = std::uint8_t;
  static constexpr index_t group_size = 16;
  static constexpr index_t column_multiple = 16;
  static constexpr bool has_tensor_scale = true;
  static constexpr bool asymmetric = false;

  PQ_HD static constexpr float tensor_scale(float unit_amax) { return nvfp4_global_scale(unit_amax); }
  PQ_HD static constexpr qparams group_params(float lo, float hi, float g) {
    return nvfp4_block_params(max_abs(lo, hi), g);
  }
  PQ_HD static constexpr std::uint32_t quantize(float x, qparams p) { return element::encode(x / p.scale); }
  PQ_HD static constexpr float dequantize(std::uint32_t code, qparams p) { return element::decode(code) * p.scale; }

  static constexpr auto stored_tensors(index_t rows, index_t cols) {
    constexpr std::size_t n = Activations ? 4 : 3;
    std::array<stored_tensor, n> t{{
        {tensor_role::codes, "weight_packed", dtype::U8, {rows, cols / 2}, 2},
        {tensor_role::block_scale, "weight_scale", dtype::F8_E4M3, {rows, cols / group_size}, 2},
        {tensor_role::global_scale, "weight_global_scale", dtype::F32, {1, 0}, 1},
    }};
    if constexpr (Activations) t[3] = {tensor_role::input_global_scale, "input_global_scale", dtype::F32, {1, 0}, 1};
    return t;
  }

  static constexpr ct_args weight_args{4, "float", "tensor_group", 16, true, ct_dynamic::no,
                                       "torch.float8_e4m3fn", "memoryless_minmax"};
  static constexpr ct_args input_args{4, "float", "tensor_group", 16, true, ct_dynamic::local,
                                      "torch.float8_e4m3fn", "static_minmax"};
  static constexpr std::optional<ct_scheme> scheme = ct_scheme{
      "nvfp4-pack-quantized", weight_args, Activations ? std::optional<ct_args>(input_args) : std::nullopt};
};
}  // namespace detail

struct NVFP4 : detail::nvfp4_policy<true> {
  static constexpr std::string_view name = "NVFP4";
};
struct NVFP4A16 : detail::nvfp4_policy<false> {
  static constexpr std::string_view name = "NVFP4A16";
};

// The spec's numbers (shared/spec/compressed-tensors.md §2, §3.1): E2M1 elements up to 6, E4M3 block scales up
// to 448 (0x7E), one scale per 16 elements, and for an [N, K] Linear exactly weight_packed [N, K/2] U8 +
// weight_scale [N, K/16] F8_E4M3 + weight_global_scale F32 [1] (+ input_global_scale F32 [1] for W4A4).
static_assert(Format<NVFP4> && Format<NVFP4A16>);
static_assert(e2m1::max_finite == 6.0f && e4m3::max_finite == 448.0f && e4m3::encode(448.0f) == 0x7Eu);
static_assert(NVFP4::group_size == 16 && NVFP4A16::group_size == 16);
static_assert(stored_bytes<NVFP4A16>(4096, 4096) == 4096 * 4096 / 2 + 4096 * 4096 / 16 + 4);
static_assert(stored_bytes<NVFP4>(4096, 4096) == stored_bytes<NVFP4A16>(4096, 4096) + 4);
static_assert(nvfp4_global_scale(6.0f) == 448.0f);  // g = 448·6 / amax

}  // namespace pq
