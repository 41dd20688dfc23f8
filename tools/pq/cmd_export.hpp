// `pq export` (one format for every Linear, round-to-nearest, no calibration: pipeline/uniform_export.hpp)
// and `pq decode` (the fp32 weights of a compressed-tensors checkpoint as pq dequantizes them: io/decode.hpp).
#pragma once
#include <memory>
#include <string>

#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include <pq/io/decode.hpp>
#include <pq/pipeline/uniform_export.hpp>

#include "options_cli.hpp"

namespace pq::cli {

inline void add_export_commands(CLI::App& app) {
  auto a = std::make_shared<pipeline::uniform_export_options>();
  auto shard_gib = std::make_shared<double>(5.0);
  auto* exp = app.add_subcommand("export", "Quantize every Linear with one format by round-to-nearest (no calibration) "
                                           "and write a compressed-tensors checkpoint");
  exp->add_option("--model", a->model, "Hugging Face model directory (read only)")->required();
  exp->add_option("--out", a->out, "Output directory (must not exist unless --force)")->required();
  exp->add_option("--format", a->format, "Format of every Linear (see pq formats; exportable ones only)")->required();
  exp->add_option("--max-shard-gib", *shard_gib, "Largest shard")->capture_default_str()->check(CLI::PositiveNumber);
  exp->add_flag("--force", a->force, "Replace an existing output directory");
  add_example(*exp, "pq export --model M --out M-mxfp4 --format MXFP4");
  exp->callback([a, shard_gib] {
    a->max_shard_bytes = static_cast<std::uint64_t>(*shard_gib * (1ull << 30));
    const std::size_t n = pipeline::export_uniform(*a);
    fmt::print("{}: {} Linears in {} (RTN), written to {}\n", a->model.string(), n, a->format, a->out.string());
  });

  auto ckpt = std::make_shared<std::string>(), out = std::make_shared<std::string>();
  auto* dec = app.add_subcommand("decode", "Write the fp32 weights of a compressed-tensors checkpoint's Linears, "
                                           "dequantized by pq, to one safetensors file");
  dec->add_option("checkpoint", *ckpt, "Checkpoint directory written by pq")->required();
  dec->add_option("--out", *out, "Output .safetensors file (must not exist)")->required();
  add_example(*dec, "pq decode M-pq --out M-pq-weights.safetensors");
  dec->callback([ckpt, out] {
    const std::size_t n = io::decode_checkpoint(*ckpt, *out);
    fmt::print("{}: {} Linears decoded to {}\n", *ckpt, n, *out);
  });
}

}  // namespace pq::cli
