// pq/formats/bf16.hpp: BF16 passthrough, the "not quantized" choice, priced like every other format.
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <string_view>

#include <pq/core/bf16.hpp>
#include <pq/formats/format.hpp>

namespace pq {

struct BF16 {
  static constexpr std::string_view name = "BF16";
  using element = bf16;
  using code_type = std::uint16_t;
  static constexpr index_t group_size = 0;
  static constexpr index_t column_multiple = 1;
  static constexpr bool has_tensor_scale = false;
  static constexpr bool asymmetric = false;
  static constexpr bool passthrough = true;  // the source tensor ships as it is

  PQ_HD static constexpr float tensor_scale(float) { return 1.0f; }
  PQ_HD static constexpr qparams group_params(float, float, float) { return {}; }
  PQ_HD static constexpr std::uint32_t quantize(float x, qparams) { return element::encode(x); }
  PQ_HD static constexpr float dequantize(std::uint32_t code, qparams) { return element::decode(code); }

  static constexpr auto stored_tensors(index_t rows, index_t cols) {
    return std::array<stored_tensor, 1>{{{tensor_role::codes, "weight", dtype::BF16, {rows, cols}, 2}}};
  }
  // Not a compressed-tensors scheme: a BF16 Linear goes to the ignore list and keeps its source tensor.
  static constexpr std::optional<ct_scheme> scheme = std::nullopt;
};

// Passthrough stores the source tensor as it is: 16 bits per weight, nothing else.
static_assert(Format<BF16>);
static_assert(stored_bytes<BF16>(4096, 4096) == 4096 * 4096 * 2 && !BF16::scheme.has_value());
static_assert(is_passthrough<BF16> && is_exportable<BF16> && !needs_activation_stats<BF16>);

}  // namespace pq
