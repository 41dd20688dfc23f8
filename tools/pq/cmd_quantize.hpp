// `pq quantize`: the whole pipeline (include/pq/pipeline/quantize.hpp), its flags bound from
// pipeline::quantize_options, and its summary table.
#pragma once
#include <map>
#include <memory>

#include <CLI/CLI.hpp>
#include <fmt/core.h>
#include <fmt/ranges.h>

#include <pq/pipeline/quantize.hpp>

#include "options_cli.hpp"

namespace pq::cli {

inline void print_summary(const nlohmann::json& r) {
  fmt::print("\n{:<22} {}\n", "model", r["model"].get<std::string>());
  fmt::print("{:<22} {:.4f} (target {:.4f})\n", "bits/weight", r["achieved_bpp"].get<double>(), r["target_bpp"].get<double>());
  std::string counts;
  for (auto it = r["counts"].begin(); it != r["counts"].end(); ++it)
    counts += fmt::format("{}{} {}", counts.empty() ? "" : ", ", it.value().get<long long>(), it.key());
  fmt::print("{:<22} {}\n", "Linears", counts);
  fmt::print("{:<22} {:.6g}\n", "predicted loss", r["predicted_loss"].get<double>());
  if (r.contains("shipped"))
    fmt::print("{:<22} KL {:.6f}  NLL {:.4f} (source NLL {:.4f})\n", "measured on eval", r["shipped"]["kl"].get<double>(),
               r["shipped"]["nll"].get<double>(), r["source"]["nll"].get<double>());
  if (!r["knee"].is_null()) fmt::print("{:<22} {:.4f} bits/weight\n", "Pareto knee", r["knee"].get<double>());
  std::string timings;
  for (auto it = r["timings_s"].begin(); it != r["timings_s"].end(); ++it)
    timings += fmt::format("{}{} {:.2f}s", timings.empty() ? "" : ", ", it.key(), it.value().get<double>());
  fmt::print("{:<22} {}\n", "time", timings);
  fmt::print("{:<22} {:.1f} MiB\n", "peak memory", r["peak_rss_bytes"].get<double>() / (1 << 20));
}

inline void add_quantize_command(CLI::App& app) {
  auto o = std::make_shared<pipeline::quantize_options>();
  auto* cmd = app.add_subcommand("quantize", "Calibrate, allocate formats under a bit budget, validate on measured KL, "
                                             "round and export a compressed-tensors checkpoint");
  bind_options(*cmd, *o);
  add_example(*cmd, "pq quantize --model M --out M-pq --calib M/tokens.safetensors:calib --eval M/tokens.safetensors:eval "
                    "--formats NVFP4,MXFP8_E4M3,BF16 --target-bits 4.75");
  cmd->callback([o] {
    const auto report = pipeline::run_quantize(*o);
    print_summary(report);
    fmt::print("{:<22} {}\n", "checkpoint", o->out->string());
  });
}

}  // namespace pq::cli
