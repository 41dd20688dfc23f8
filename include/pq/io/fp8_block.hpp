// pq/io/fp8_block.hpp: block-scaled FP8 source checkpoints (DeepSeek-V3, the Qwen3 FP8 releases):
// config.json quantization_config {"quant_method": "fp8", "weight_block_size": [128, 128]}, each quantized
// Linear stored as `weight` F8_E4M3 [M, N] and `weight_scale_inv` F32 [ceil(M/128), ceil(N/128)] (edge
// tiles partial), W = e4m3(weight) * weight_scale_inv tile by tile (pq::fp8_block_layout). Read as source
// weights (dequantized on load), kept as they are by FP8_SOURCE, and written by pq for tests (the reference
// rounding of tests/io/fp8/make_fp8_block.py).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <pq/formats/fp8.hpp>
#include <pq/io/model_dir.hpp>
#include <pq/io/safetensors.hpp>

namespace pq::io {

using pq::fp8_block_layout;

// The block layout of a config.json whose quantization_config is block-scaled FP8; nullopt for any other
// checkpoint. A "fp8" config pq cannot read (per-tensor scales, another element type) is an error.
inline std::optional<fp8_block_layout> fp8_block_layout_of(const nlohmann::json& config, const std::string& source) {
  if (!config.contains("quantization_config") || !config["quantization_config"].is_object()) return std::nullopt;
  const auto& q = config["quantization_config"];
  if (q.value("quant_method", "") != "fp8") return std::nullopt;
  if (q.contains("fmt") && q["fmt"] != "e4m3")
    throw format_error(source + ": quantization_config fmt " + q["fmt"].dump() + " is not supported (only e4m3)");
  const auto& b = q.contains("weight_block_size") ? q["weight_block_size"] : nlohmann::json();
  if (!b.is_array() || b.size() != 2 || !b[0].is_number_integer() || !b[1].is_number_integer() || b[0] <= 0 || b[1] <= 0)
    throw format_error(source + ": fp8 quantization_config without a weight_block_size [rows, cols] "
                                "(per-tensor FP8 sources are not supported)");
  return fp8_block_layout{b[0].get<index_t>(), b[1].get<index_t>()};
}

// fp32 [m, n] weights of an FP8 Linear from its codes and tile scales; the shapes are checked.
inline std::vector<float> dequantize_fp8_block(const tensor_view& weight, const tensor_view& scale_inv,
                                               const fp8_block_layout& b) {
  if (weight.type != dtype::F8_E4M3 || weight.shape.size() != 2)
    throw format_error("tensor '" + weight.name + "' is not a 2-D F8_E4M3 weight");
  const std::int64_t m = weight.shape[0], n = weight.shape[1];
  if (scale_inv.shape != b.scale_shape(m, n))
    throw format_error("tensor '" + scale_inv.name + "' has the wrong shape for " + std::to_string(b.rows) + "x" +
                       std::to_string(b.cols) + " tiles of [" + std::to_string(m) + ", " + std::to_string(n) + "]");
  const std::vector<float> s = to_float(scale_inv);  // F32 as released; BF16/F16 read alike
  std::vector<float> w(static_cast<std::size_t>(m * n));
  const auto* codes = reinterpret_cast<const unsigned char*>(weight.data.data());
  for (std::int64_t i = 0; i < m; ++i)
    for (std::int64_t j = 0; j < n; ++j) {
      const std::size_t k = static_cast<std::size_t>(i * n + j);
      w[k] = FP8_SOURCE::dequantize(codes[k], {0, s[static_cast<std::size_t>(b.tile_of(i, j, n))], 0});
    }
  return w;
}

// The reference block rounding: per tile scale = amax / 448 (1 for an all-zero tile), code =
// e4m3_RNE(w / scale), saturating (fp8_block_params, FP8_SOURCE::quantize). Codes [m, n] and scales
// [ceil(m/rows), ceil(n/cols)].
struct fp8_block_weight {
  std::vector<std::uint8_t> codes;
  std::vector<float> scale_inv;
};
inline fp8_block_weight quantize_fp8_block(const float* w, std::int64_t m, std::int64_t n, const fp8_block_layout& b) {
  fp8_block_weight q{std::vector<std::uint8_t>(static_cast<std::size_t>(m * n)),
                     std::vector<float>(static_cast<std::size_t>(b.tile_rows(m) * b.tile_cols(n)))};
  for (std::int64_t ti = 0; ti < b.tile_rows(m); ++ti)
    for (std::int64_t tj = 0; tj < b.tile_cols(n); ++tj) {
      const std::int64_t i1 = std::min<std::int64_t>(m, (ti + 1) * b.rows);
      const std::int64_t j1 = std::min<std::int64_t>(n, (tj + 1) * b.cols);
      float amax = 0;
      for (std::int64_t i = ti * b.rows; i < i1; ++i)
        for (std::int64_t j = tj * b.cols; j < j1; ++j) amax = std::max(amax, std::fabs(w[i * n + j]));
      const qparams p = fp8_block_params(amax);
      q.scale_inv[static_cast<std::size_t>(ti * b.tile_cols(n) + tj)] = p.scale;
      for (std::int64_t i = ti * b.rows; i < i1; ++i)
        for (std::int64_t j = tj * b.cols; j < j1; ++j)
          q.codes[static_cast<std::size_t>(i * n + j)] = static_cast<std::uint8_t>(FP8_SOURCE::quantize(w[i * n + j], p));
    }
  return q;
}

// The tensor holding Linear `linear`'s tile scales in a block-FP8 source.
inline std::string fp8_scale_name(const std::string& linear) { return linear + ".weight_scale_inv"; }

// How `dir` stores the weight `<linear>.weight`, given its config's block layout (fp8_block_layout_of): block
// FP8 when it is F8_E4M3 (then its `weight_scale_inv` must be there), else dense.
inline source_encoding linear_encoding(const model_dir& dir, const std::optional<fp8_block_layout>& layout,
                                       const std::string& linear) {
  const std::string name = linear + ".weight";
  if (!layout || !dir.has(name) || dir.tensor(name).type != dtype::F8_E4M3) return std::nullopt;
  if (!dir.has(fp8_scale_name(linear)))
    throw format_error(dir.path().string() + ": FP8 tensor '" + name + "' has no '" + fp8_scale_name(linear) + "'");
  return layout;
}

// The fp32 weight `<linear>.weight` as pq reads the source: a block-FP8 one dequantized, a dense one converted.
inline std::vector<float> source_weight(const model_dir& dir, const std::optional<fp8_block_layout>& layout,
                                        const std::string& linear) {
  const std::string name = linear + ".weight";
  if (const auto tiles = linear_encoding(dir, layout, linear))
    return dequantize_fp8_block(dir.tensor(name), dir.tensor(fp8_scale_name(linear)), *tiles);
  return to_float(dir.tensor(name));
}

}  // namespace pq::io
