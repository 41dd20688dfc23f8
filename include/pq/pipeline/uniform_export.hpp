// pq/pipeline/uniform_export.hpp: `pq export`: every Linear in one format by round-to-nearest, no
// calibration, streamed one decision unit at a time. The baseline a mixed build is compared with.
#pragma once
#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <pq/formats/bundle.hpp>
#include <pq/io/export.hpp>
#include <pq/io/fp8_block.hpp>
#include <pq/model/architecture.hpp>
#include <pq/pipeline/options.hpp>
#include <pq/quant/rtn.hpp>

namespace pq::pipeline {

struct uniform_export_options {
  std::filesystem::path model, out;
  std::string format;
  std::uint64_t max_shard_bytes = 5ull << 30;
  bool force = false;
};

// Writes the checkpoint; returns the number of Linears quantized. Decision units share the tensor scale.
inline std::size_t export_uniform(const uniform_export_options& a) {
  const auto dir = io::model_dir::open(a.model);
  const auto prof = model::make_profile(model::parse_config(dir.config_json(), (dir.path() / "config.json").string()));
  if (resolve_format(a.format).needs_activation_stats)
    throw pipeline_error("--format " + a.format + " needs calibrated activation scales (input_global_scale); "
                         "use NVFP4A16 here, or pq quantize with calibration tokens");
  io::ct_export exporter(dir, prof, std::vector<std::string>(prof.linears.size(), a.format), a.out,
                         {a.max_shard_bytes, a.force});
  const auto fp8 = io::fp8_block_layout_of(dir.config_json(), (dir.path() / "config.json").string());
  visit_format(a.format, [&](auto f) {
    using F = decltype(f);
    if constexpr (is_roundable<F>)
      for (const auto& u : prof.units) {
        if (std::none_of(u.members.begin(), u.members.end(),
                         [&](int m) { return exporter.expects(static_cast<std::size_t>(m)); }))
          continue;  // the source's own tensors ship
        std::vector<std::vector<float>> w;
        float amax = 0.0f;
        for (int m : u.members) {
          const auto& l = prof.linears[static_cast<std::size_t>(m)];
          w.push_back(io::source_weight(dir, fp8, l.name));  // a block-FP8 weight dequantized
          amax = std::max(amax, weight_amax(w.back(), l.name));
        }
        for (std::size_t i = 0; i < w.size(); ++i) {
          const auto index = static_cast<std::size_t>(u.members[i]);
          const auto& l = prof.linears[index];
          if (exporter.expects(index))
            exporter.write_linear(index, pack(quantize_rtn<F>(w[i], l.rows, l.cols, F::tensor_scale(amax))));
        }
      }
  });
  exporter.finish();
  return prof.linears.size();
}

}  // namespace pq::pipeline
