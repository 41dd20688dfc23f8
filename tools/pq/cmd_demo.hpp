// `pq demo`: the main job on an embedded default, no download needed: writes a seeded synthetic
// Llama-shaped checkpoint with calibration and evaluation tokens, then runs the whole `pq quantize`
// pipeline on it (NVFP4 / MXFP8_E4M3 / BF16 at 4.75 bits per weight) and prints the report.
#pragma once
#include <filesystem>
#include <memory>

#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include "cmd_quantize.hpp"
#include "cmd_synth.hpp"

namespace pq::cli {

inline void add_demo_command(CLI::App& app) {
  auto dir = std::make_shared<std::filesystem::path>(std::filesystem::temp_directory_path() / "pq-demo");
  auto preset = std::make_shared<std::string>("tiny");
  auto* cmd = app.add_subcommand("demo", "Quantize a synthetic model end to end (the embedded default)");
  cmd->add_option("--dir", *dir, "Work directory (replaced)")->capture_default_str();
  cmd->add_option("--preset", *preset, "Synthetic model: tiny | moe-tiny | 1b | 8b")->capture_default_str();
  add_example(*cmd, "pq demo --preset moe-tiny");
  cmd->callback([dir, preset] {
    synth_request s;
    s.out = *dir / "model";
    s.preset = *preset;
    s.force = true;
    synth(s);
    fmt::print("synthetic {} model written to {}\n", *preset, s.out.string());
    pipeline::quantize_options o;
    o.model = s.out;
    o.out = *dir / "quantized";
    o.force = true;
    o.calib = (s.out / "tokens.safetensors").string() + ":calib";
    o.eval = (s.out / "tokens.safetensors").string() + ":eval";
    const auto report = pipeline::run_quantize(o);
    print_summary(report);
    fmt::print("{:<22} {} (report.json, pareto.svg inside)\n", "checkpoint", o.out->string());
  });
}

}  // namespace pq::cli
