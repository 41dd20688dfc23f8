// examples/nf3_format.hpp: a format pq does not ship, written outside pq's headers as a user writes one: a
// 3-bit normal-float codebook with a BF16 absmax scale per 64 columns ("NF3_G64"). custom_format.cpp uses it on
// the host; tests/cuda/test_gptq.cu runs it through the device GPTQ unchanged.
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <string_view>

#include <pq/core/bf16.hpp>
#include <pq/formats/format.hpp>

// The element codec: 8 levels at Gaussian quantiles, scaled to [-1, 1]; nearest level, ties to even index.
struct nf3 {
  static constexpr std::string_view name = "NF3";
  static constexpr int bits = 3;
  static constexpr std::uint32_t code_count = 8;
  static constexpr float level(std::uint32_t i) {
    constexpr std::array<float, 8> levels{-1.0f, -0.5350f, -0.2469f, 0.0f, 0.1833f, 0.3819f, 0.6229f, 1.0f};
    return levels[i & 7u];
  }
  PQ_HD static constexpr float decode(std::uint32_t code) { return level(code); }
  PQ_HD static constexpr std::uint32_t encode(float y) {
    std::uint32_t best = 0;
    for (std::uint32_t i = 1; i < 8; ++i) {
      const float d = y - level(i), b = y - level(best);
      if (d * d < b * b || (d * d == b * b && (i & 1u) == 0u)) best = i;
    }
    return best;
  }
};

struct NF3_G64 {
  static constexpr std::string_view name = "NF3_G64";
  using element = nf3;
  using scale_codec = pq::bf16;
  using code_type = std::uint8_t;
  static constexpr pq::index_t group_size = 64;
  static constexpr pq::index_t column_multiple = 64;
  static constexpr bool has_tensor_scale = false;
  static constexpr bool asymmetric = false;

  PQ_HD static constexpr float tensor_scale(float) { return 1.0f; }
  PQ_HD static constexpr pq::qparams group_params(float lo, float hi, float) {
    std::uint32_t code = pq::bf16::encode(pq::max_abs(lo, hi));
    if (pq::bf16::decode(code) == 0.0f) code = pq::bf16::encode(0x1p-7f);
    return {code, pq::bf16::decode(code), 0};
  }
  PQ_HD static constexpr std::uint32_t quantize(float x, pq::qparams p) { return element::encode(x / p.scale); }
  PQ_HD static constexpr float dequantize(std::uint32_t c, pq::qparams p) { return element::decode(c) * p.scale; }

  // Stored as a dense 3-bit stream in int32 words plus one BF16 scale per group.
  static constexpr auto stored_tensors(pq::index_t rows, pq::index_t cols) {
    return std::array<pq::stored_tensor, 2>{{
        {pq::tensor_role::codes, "weight_packed", pq::dtype::I32, {rows, (cols * 3 + 31) / 32}, 2},
        {pq::tensor_role::block_scale, "weight_scale", pq::dtype::BF16, {rows, cols / 64}, 2},
    }};
  }
  static constexpr std::optional<pq::ct_scheme> scheme = std::nullopt;  // research only
};
static_assert(pq::Format<NF3_G64>);
