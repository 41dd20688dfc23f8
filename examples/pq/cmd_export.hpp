// `pq export` (one format for every Linear, round-to-nearest, no calibration) and `pq decode` (the fp32 weights
// a compressed-tensors checkpoint holds, as pq dequantizes them, written to one safetensors file).
#pragma once
#include <algorithm>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include <pq/formats/bundle.hpp>
#include <pq/io/export.hpp>
#include <pq/model/architecture.hpp>
#include <pq/quant/rtn.hpp>

namespace pq::cli {

struct export_args {
  std::string model, out, format;
  double max_shard_gib = 5.0;
  bool force = false;
};

// fp32 weights of one decision unit's members, and their common amax (the NVFP4 global scale's input).
inline std::vector<std::vector<float>> unit_weights(const io::model_dir& dir, const model::profile& p,
                                                    const model::decision_unit& u, float& amax) {
  std::vector<std::vector<float>> w;
  amax = 0.0f;
  for (int m : u.members) {
    const auto& l = p.linears[static_cast<std::size_t>(m)];
    w.push_back(io::to_float(dir.tensor(l.name + ".weight")));
    amax = std::max(amax, weight_amax(w.back(), l.name));
  }
  return w;
}

// Every Linear in one format by RTN; decision units share the tensor scale. Streams one unit at a time.
inline void export_uniform(const export_args& a) {
  const auto dir = io::model_dir::open(a.model);
  const auto prof = model::make_profile(model::parse_config(dir.config_json(), (dir.path() / "config.json").string()));
  visit_format(a.format, [&](auto f) {
    using F = decltype(f);
    if constexpr (F::scheme.has_value() && F::has_tensor_scale) {
      if (F::scheme->input_activations.has_value())
        throw std::invalid_argument("--format " + a.format + " needs calibrated activation scales (input_global_scale); "
                                    "use NVFP4A16 here, or pq quantize with calibration tokens");
    }
  });
  io::ct_export exporter(dir, prof, std::vector<std::string>(prof.linears.size(), a.format), a.out,
                         {static_cast<std::uint64_t>(a.max_shard_gib * (1ull << 30)), a.force});
  visit_format(a.format, [&](auto f) {
    using F = decltype(f);
    for (const auto& u : prof.units) {
      float amax = 0.0f;
      const auto w = unit_weights(dir, prof, u, amax);
      for (std::size_t i = 0; i < w.size(); ++i) {
        const auto index = static_cast<std::size_t>(u.members[i]);
        const auto& l = prof.linears[index];
        exporter.write_linear(index, pack(quantize_rtn<F>(w[i], l.rows, l.cols, F::tensor_scale(amax))));
      }
    }
  });
  exporter.finish();
  fmt::print("{}: {} Linears in {} (RTN), written to {}\n", a.model, prof.linears.size(), a.format, a.out);
}

// Writes "<linear>.weight" F32 [rows, cols] for every Linear of a compressed-tensors checkpoint.
inline void decode(const std::string& checkpoint, const std::string& out_file) {
  const auto ct = io::ct_checkpoint::open(checkpoint);
  if (std::filesystem::exists(out_file)) throw std::invalid_argument(out_file + ": exists; refusing to overwrite");
  std::vector<io::tensor_decl> decls;
  for (const auto& l : ct.profile.linears) decls.push_back({l.name + ".weight", dtype::F32, {l.rows, l.cols}});
  const auto tmp = std::filesystem::path(out_file + ".pq-tmp");
  try {
    io::safetensors_writer w(tmp, decls);
    for (std::size_t i = 0; i < ct.profile.linears.size(); ++i) {
      const std::vector<float> v = ct.weight(i);
      w.write(ct.profile.linears[i].name + ".weight", std::as_bytes(std::span(v)));
    }
    w.close();
  } catch (...) {
    std::filesystem::remove(tmp);
    throw;
  }
  std::filesystem::rename(tmp, out_file);
  fmt::print("{}: {} Linears decoded to {}\n", checkpoint, ct.profile.linears.size(), out_file);
}

inline void add_export_commands(CLI::App& app) {
  auto a = std::make_shared<export_args>();
  auto* exp = app.add_subcommand("export", "Quantize every Linear with one format by round-to-nearest (no calibration) "
                                           "and write a compressed-tensors checkpoint");
  exp->add_option("--model", a->model, "Hugging Face model directory (read only)")->required();
  exp->add_option("--out", a->out, "Output directory (must not exist unless --force)")->required();
  exp->add_option("--format", a->format, "Format of every Linear (see pq formats; exportable ones only)")->required();
  exp->add_option("--max-shard-gib", a->max_shard_gib, "Largest shard")->capture_default_str()->check(CLI::PositiveNumber);
  exp->add_flag("--force", a->force, "Replace an existing output directory");
  exp->callback([a] { export_uniform(*a); });

  auto ckpt = std::make_shared<std::string>(), out = std::make_shared<std::string>();
  auto* dec = app.add_subcommand("decode", "Write the fp32 weights of a compressed-tensors checkpoint's Linears, "
                                           "dequantized by pq, to one safetensors file");
  dec->add_option("checkpoint", *ckpt, "Checkpoint directory written by pq")->required();
  dec->add_option("--out", *out, "Output .safetensors file (must not exist)")->required();
  dec->callback([ckpt, out] { decode(*ckpt, *out); });
}

}  // namespace pq::cli
