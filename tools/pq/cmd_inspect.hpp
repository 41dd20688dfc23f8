// `pq inspect MODEL_DIR`: architecture, quantizable Linears, decision units, shapes, dtypes and sizes.
#pragma once
#include <memory>
#include <string>

#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include <pq/io/model_dir.hpp>
#include <pq/model/architecture.hpp>
#include <pq/model/config.hpp>

#include "options_cli.hpp"

namespace pq::cli {

inline void inspect(const std::filesystem::path& path) {
  const auto dir = io::model_dir::open(path);
  const auto cfg = model::parse_config(dir.config_json(), (path / "config.json").string());
  const auto p = model::make_profile(cfg);
  const auto& f = cfg.shape;
  fmt::print("{}: {} ({}), {} layers, hidden {}, {} heads x {} ({} KV), vocab {}{}\n", path.string(), cfg.model_type,
             cfg.dtype, f.layers, f.hidden, f.heads, f.head_dim, f.kv_heads, f.vocab,
             f.tied_embeddings ? ", tied embeddings" : "");
  if (f.moe.num_experts)
    fmt::print("MoE: {} experts x {}, top-{}{}, shared expert {}\n", f.moe.num_experts, f.moe.expert_intermediate,
               f.moe.experts_per_token, f.moe.renormalize_top_k ? " (renormalised)" : "", f.moe.shared_expert_intermediate);
  std::int64_t total_bytes = 0;
  for (const auto& n : dir.tensor_names()) total_bytes += static_cast<std::int64_t>(dir.tensor(n).data.size());
  fmt::print("{} tensors in {} file(s), {:.1f} MiB; {} quantizable Linears ({:.2f} M weights) in {} decision units\n\n",
             dir.tensor_names().size(), dir.files().size(), total_bytes / 1048576.0, p.linears.size(),
             p.quantizable_params() / 1e6, p.units.size());
  fmt::print("{:<44} {:>8} {:>14} {:>6}  {}\n", "decision unit / Linear", "members", "shape", "dtype", "MiB");
  for (const auto& u : p.units) {
    std::int64_t params = 0;
    for (int m : u.members) params += p.linears[static_cast<std::size_t>(m)].params();
    fmt::print("{:<44} {:>8} {:>14} {:>6}  {:.2f}\n", u.name, u.members.size(), "", "", params * 2 / 1048576.0);
    if (u.members.size() > 3) continue;  // an MoE unit: members summarised
    for (int m : u.members) {
      const auto& l = p.linears[static_cast<std::size_t>(m)];
      const auto& t = dir.tensor(l.name + ".weight");
      fmt::print("  {:<42} {:>8} {:>14} {:>6}  {:.2f}\n", l.name, "", fmt::format("{}x{}", l.rows, l.cols),
                 to_string(t.type), t.data.size() / 1048576.0);
    }
  }
  fmt::print("\nnot quantized (BF16, in the ignore list): embeddings, ");
  for (std::size_t i = 0; i < p.unquantized_linears.size(); ++i)
    fmt::print("{}{}", i ? ", " : "", p.unquantized_linears[i]);
  fmt::print("\n");
}

inline void add_inspect_command(CLI::App& app) {
  auto path = std::make_shared<std::string>();
  auto* cmd = app.add_subcommand("inspect", "Print a model's architecture, Linears, decision units and sizes");
  add_example(*cmd, "pq inspect ../shared/models/tiny-llama-code");
  cmd->add_option("model", *path, "Hugging Face model directory")->required();
  cmd->callback([path] { inspect(*path); });
}

}  // namespace pq::cli
