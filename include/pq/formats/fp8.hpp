// pq/formats/fp8.hpp: FP8 E4M3 weights with one BF16 scale per output channel (row), exported as
// compressed-tensors FP8_DYNAMIC (activations quantized per token at run time, natively on SM89+).
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <string_view>

#include <pq/core/bf16.hpp>
#include <pq/core/minifloat.hpp>
#include <pq/formats/format.hpp>

namespace pq {

// Scale of a row: BF16(amax / 448); a zero scale becomes 2^-7 (bf16 epsilon), as compressed-tensors does.
PQ_HD constexpr qparams fp8_channel_params(float row_amax) {
  std::uint32_t code = bf16::encode(row_amax / e4m3::max_finite);
  if (bf16::decode(code) == 0.0f) code = bf16::encode(0x1p-7f);
  return {code, bf16::decode(code), 0};
}

struct FP8_CHANNEL {
  static constexpr std::string_view name = "FP8_CHANNEL";
  using element = e4m3;
  using scale_codec = bf16;
  using code_type = std::uint8_t;
  static constexpr index_t group_size = 0;  // one group per row
  static constexpr index_t column_multiple = 1;
  static constexpr bool has_tensor_scale = false;
  static constexpr bool asymmetric = false;

  PQ_HD static constexpr float tensor_scale(float) { return 1.0f; }
  PQ_HD static constexpr qparams group_params(float lo, float hi, float) { return fp8_channel_params(max_abs(lo, hi)); }
  PQ_HD static constexpr std::uint32_t quantize(float x, qparams p) { return element::encode(x / p.scale); }
  PQ_HD static constexpr float dequantize(std::uint32_t code, qparams p) { return element::decode(code) * p.scale; }

  static constexpr auto stored_tensors(index_t rows, index_t cols) {
    return std::array<stored_tensor, 2>{{
        {tensor_role::codes, "weight", dtype::F8_E4M3, {rows, cols}, 2},
        {tensor_role::block_scale, "weight_scale", dtype::BF16, {rows, 1}, 2},
    }};
  }
  static constexpr std::optional<ct_scheme> scheme = ct_scheme{
      "float-quantized",
      {8, "float", "channel", 0, true, ct_dynamic::no, "", "memoryless_minmax"},
      ct_args{8, "float", "token", 0, true, ct_dynamic::yes, "", ""}};
};

// The spec's numbers (shared/spec/compressed-tensors.md §2, §3.4): E4M3FN max 448, one BF16 scale per row:
// weight [N, K] F8_E4M3 + weight_scale [N, 1], 8 + 16/K bits per weight.
static_assert(Format<FP8_CHANNEL>);
static_assert(e4m3::max_finite == 448.0f && e4m3::decode(0x38) == 1.0f && e4m3::decode(0x20) == 0.125f);
static_assert(stored_bytes<FP8_CHANNEL>(4096, 4096) == 4096 * 4096 + 2 * 4096);

}  // namespace pq
