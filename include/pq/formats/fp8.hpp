// pq/formats/fp8.hpp: FP8 E4M3 weights with one BF16 scale per output channel (row), exported as
// compressed-tensors FP8_DYNAMIC (activations quantized per token at run time, natively on SM89+); and
// FP8_SOURCE, a block-FP8 source Linear shipped as it came, exported as compressed-tensors FP8_BLOCK.
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

// Scale of one tile of a block-FP8 weight as the releases round it (and tests/io/fp8/make_fp8_block.py, their
// reference): amax / 448 in fp32, 1 for an all-zero tile. The code is the F32's bits.
PQ_HD constexpr qparams fp8_block_params(float tile_amax) {
  const float s = tile_amax > 0.0f ? tile_amax / e4m3::max_finite : 1.0f;
  return {float_bits(s), s, 0};
}

// A Linear that the source stores as 128x128 block FP8, exactly as it came: its E4M3 codes and F32 tile scales
// ship byte for byte, the scales under compressed-tensors' name (weight_scale_inv -> weight_scale; both mean
// W = e4m3(code) * scale). Zero error against the weights pq reads from such a source (they are its decode);
// available for no other Linear (kept_encoding, pipeline/format_table.hpp), since pq does not round into it.
struct FP8_SOURCE {
  static constexpr std::string_view name = "FP8_SOURCE";
  using element = e4m3;
  using code_type = std::uint8_t;
  static constexpr index_t group_size = 0;
  static constexpr index_t column_multiple = 1;
  static constexpr bool has_tensor_scale = false;
  static constexpr bool asymmetric = false;
  static constexpr bool passthrough = true;
  static constexpr fp8_block_layout keeps_source{128, 128};

  // One tile's rounding and decode (io::quantize_fp8_block, io::dequantize_fp8_block): a "group" of these
  // building blocks is a tile; no row-grouped FP8_SOURCE matrix is ever packed (is_roundable).
  PQ_HD static constexpr float tensor_scale(float) { return 1.0f; }
  PQ_HD static constexpr qparams group_params(float lo, float hi, float) { return fp8_block_params(max_abs(lo, hi)); }
  PQ_HD static constexpr std::uint32_t quantize(float x, qparams p) { return element::encode(x / p.scale); }
  PQ_HD static constexpr float dequantize(std::uint32_t code, qparams p) { return element::decode(code) * p.scale; }

  static constexpr auto stored_tensors(index_t rows, index_t cols) {
    return std::array<stored_tensor, 2>{{
        {tensor_role::codes, "weight", dtype::F8_E4M3, {rows, cols}, 2},
        {tensor_role::tile_scale, "weight_scale", dtype::F32, {keeps_source.tile_rows(rows), keeps_source.tile_cols(cols)}, 2},
    }};
  }
  // compressed-tensors' FP8_BLOCK preset: block weights, activations quantized at run time per group of the
  // block's width (vLLM's CompressedTensorsW8A8Fp8 with weight_block_size = block_structure).
  static constexpr std::optional<ct_scheme> scheme = ct_scheme{
      "float-quantized",
      {8, "float", "block", 0, true, ct_dynamic::no, "", "memoryless_minmax",
       {static_cast<int>(keeps_source.rows), static_cast<int>(keeps_source.cols)}},
      ct_args{8, "float", "group", static_cast<int>(keeps_source.cols), true, ct_dynamic::yes, "", ""}};
};

// The spec's FP8_BLOCK (shared/spec/compressed-tensors.md §3.4): weight [N, K] F8_E4M3 + weight_scale
// [ceil(N/128), ceil(K/128)], block_structure [128, 128], input group 128: 8 bits per weight plus 32 per tile.
static_assert(Format<FP8_SOURCE> && keeps_fp8_source<FP8_SOURCE> && !is_roundable<FP8_SOURCE>);
static_assert(stored_bytes<FP8_SOURCE>(4096, 4096) == 4096 * 4096 + 4 * 32 * 32);
static_assert(stored_bytes<FP8_SOURCE>(200, 300) == 200 * 300 + 4 * 2 * 3);  // partial edge tiles
static_assert(FP8_SOURCE::scheme->weights.block_structure == std::array<int, 2>{128, 128} &&
              FP8_SOURCE::scheme->input_activations->group_size == 128);
static_assert(fp8_block_params(448.0f).scale == 1.0f && fp8_block_params(0.0f).scale == 1.0f);

}  // namespace pq
