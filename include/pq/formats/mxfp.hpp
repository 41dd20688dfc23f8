// pq/formats/mxfp.hpp: OCP microscaling formats: 32 elements share a power-of-two UE8M0 scale
// (MXFP4 = E2M1, MXFP6 = E3M2 or E2M3, MXFP8 = E4M3).
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <string_view>

#include <pq/core/minifloat.hpp>
#include <pq/formats/format.hpp>

namespace pq {

// Shared exponent of an MX group (compressed-tensors' generate_mx_scales): amax = (1+f)·2^E is rounded
// to the power of two 2^(E+1) when f >= 0.75, else 2^E; the stored exponent is that power minus
// floor(log2(element max)), biased by 127 and clamped to [0, 254]. amax = 0 gives code 0. Groups whose
// largest element lands in (max, 2^(emax+1)·1.75) saturate: the rule's clipping, by design.
template <class Element>
PQ_HD constexpr qparams mx_group_params(float amax) {
  constexpr int element_emax = ilog2(Element::max_finite);
  int code = 0;
  if (amax > 0.0f && is_finite(amax)) {
    int e = ilog2(amax);
    const float f = amax / pow2(e) - 1.0f;
    if (f >= 0.75f) ++e;
    code = 127 + e - element_emax;
    code = code < 0 ? 0 : code > 254 ? 254 : code;
  } else if (amax > 0.0f) {
    code = 254;
  }
  return {static_cast<std::uint32_t>(code), ue8m0::decode(static_cast<std::uint32_t>(code)), 0};
}

namespace detail {
template <class Element>
struct mx_policy {
  using element = Element;
  using scale_codec = ue8m0;
  using code_type = std::uint8_t;
  static constexpr index_t group_size = 32;
  static constexpr index_t column_multiple = 32;
  static constexpr bool has_tensor_scale = false;
  static constexpr bool asymmetric = false;

  PQ_HD static constexpr float tensor_scale(float) { return 1.0f; }
  PQ_HD static constexpr qparams group_params(float lo, float hi, float) {
    return mx_group_params<Element>(max_abs(lo, hi));
  }
  PQ_HD static constexpr std::uint32_t quantize(float x, qparams p) { return element::encode(x / p.scale); }
  PQ_HD static constexpr float dequantize(std::uint32_t code, qparams p) { return element::decode(code) * p.scale; }

  static constexpr dtype code_dtype = Element::bits == 4 ? dtype::U8 : Element::bits == 8 ? dtype::F8_E4M3 : dtype::U8;
  static constexpr index_t code_cols(index_t cols) { return cols * Element::bits / 8; }
  static constexpr auto stored_tensors(index_t rows, index_t cols) {
    return std::array<stored_tensor, 2>{{
        {tensor_role::codes, Element::bits == 8 ? "weight" : "weight_packed", code_dtype, {rows, code_cols(cols)}, 2},
        {tensor_role::block_scale, "weight_scale", dtype::U8, {rows, cols / group_size}, 2},
    }};
  }
};
}  // namespace detail

struct MXFP4 : detail::mx_policy<e2m1> {
  static constexpr std::string_view name = "MXFP4";
  static constexpr std::optional<ct_scheme> scheme = ct_scheme{
      "mxfp4-pack-quantized",
      {4, "float", "group", 32, true, ct_dynamic::no, "torch.uint8", "memoryless_minmax"},
      std::nullopt};
};
// MXFP6 has no compressed-tensors layout vLLM loads: priced and studied, never exported. Its codes are
// stored as a dense 6-bit stream for the byte count.
struct MXFP6_E3M2 : detail::mx_policy<e3m2> {
  static constexpr std::string_view name = "MXFP6_E3M2";
  static constexpr std::optional<ct_scheme> scheme = std::nullopt;
};
struct MXFP6_E2M3 : detail::mx_policy<e2m3> {
  static constexpr std::string_view name = "MXFP6_E2M3";
  static constexpr std::optional<ct_scheme> scheme = std::nullopt;
};
struct MXFP8_E4M3 : detail::mx_policy<e4m3> {
  static constexpr std::string_view name = "MXFP8_E4M3";
  static constexpr std::optional<ct_scheme> scheme = ct_scheme{
      "mxfp8-quantized",
      {8, "float", "group", 32, true, ct_dynamic::no, "torch.uint8", "memoryless_minmax"},
      std::nullopt};
};

// The spec's numbers (shared/spec/compressed-tensors.md §2, §3.2, §3.3; OCP MX v1.0): 32 elements per UE8M0
// scale (2^(e-127)); element maxima E2M1 6, E3M2 28, E2M3 7.5, E4M3 448; 4.25 / 6.25 / 8.25 bits per weight.
static_assert(Format<MXFP4> && Format<MXFP6_E3M2> && Format<MXFP6_E2M3> && Format<MXFP8_E4M3>);
static_assert(ue8m0::decode(127) == 1.0f && ue8m0::decode(125) == 0.25f);
static_assert(e2m1::max_finite == 6.0f && e3m2::max_finite == 28.0f && e2m3::max_finite == 7.5f &&
              e4m3::max_finite == 448.0f);
static_assert(MXFP4::group_size == 32 && MXFP8_E4M3::group_size == 32);
static_assert(bits_per_weight<MXFP4>(4096, 4096) == 4.25 && bits_per_weight<MXFP6_E3M2>(4096, 4096) == 6.25 &&
              bits_per_weight<MXFP6_E2M3>(4096, 4096) == 6.25 && bits_per_weight<MXFP8_E4M3>(4096, 4096) == 8.25);
// amax = (1+f)·2^E rounds to 2^(E+1) when f >= 0.75 (§3.2): 6 = 1.5·2^2 keeps 2^2, 448 = 1.75·2^8 bumps to 2^9.
static_assert(mx_group_params<e2m1>(6.0f).scale_code == 127 && mx_group_params<e4m3>(448.0f).scale_code == 128 &&
              mx_group_params<e4m3>(256.0f).scale_code == 127);

}  // namespace pq
