// `pq synth`: writes a seeded synthetic checkpoint (config.json, sharded safetensors, tokens.safetensors with
// calib/eval windows), streaming tensor by tensor, so models of any size can be made without a download.
#pragma once
#include <filesystem>
#include <fstream>
#include <memory>

#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include <pq/pipeline/synth.hpp>

#include "options_cli.hpp"

namespace pq::cli {

struct synth_request {
  std::filesystem::path out;
  std::string preset = "tiny";
  std::uint64_t seed = 0;
  int calib_windows = 32, eval_windows = 16, seq_len = 256;
  int layers = 0;  // 0: the preset's
  std::uint64_t max_shard_bytes = 2ull << 30;
  bool force = false;
};

inline void synth(const synth_request& r) {
  pipeline::synth_options o = pipeline::synth_preset(r.preset);
  o.seed = r.seed;
  if (r.layers > 0) o.num_layers = r.layers;
  pipeline::write_synthetic_checkpoint(o, r.out, {r.calib_windows, r.eval_windows, r.seq_len, r.max_shard_bytes, r.force});
}

inline void add_synth_command(CLI::App& app) {
  auto r = std::make_shared<synth_request>();
  auto* cmd = app.add_subcommand("synth", "Write a seeded synthetic Llama- or MoE-shaped checkpoint with calib/eval tokens");
  add_example(*cmd, "pq synth --out /tmp/tiny --preset tiny --seed 1");
  cmd->add_option("--out", r->out, "Output directory")->required();
  cmd->add_option("--preset", r->preset, "tiny | moe-tiny | 1b | 8b")->capture_default_str();
  cmd->add_option("--layers", r->layers, "Decoder layers (0: the preset's); e.g. to see what scales with depth")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--seed", r->seed, "Seed of weights and tokens")->capture_default_str();
  cmd->add_option("--calib-windows", r->calib_windows, "Calibration windows in tokens.safetensors")->capture_default_str();
  cmd->add_option("--eval-windows", r->eval_windows, "Evaluation windows in tokens.safetensors")->capture_default_str();
  cmd->add_option("--seq-len", r->seq_len, "Tokens per window")->capture_default_str();
  cmd->add_flag("--force", r->force, "Replace an existing output directory");
  cmd->callback([r] {
    synth(*r);
    fmt::print("wrote {} (preset {}, seed {})\n", r->out.string(), r->preset, r->seed);
  });
}

}  // namespace pq::cli
