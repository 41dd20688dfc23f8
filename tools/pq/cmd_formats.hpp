// `pq formats`: the registry as a table, every column derived from the policy types.
#pragma once
#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include <pq/formats/bundle.hpp>

#include "options_cli.hpp"

namespace pq::cli {

inline void print_formats(index_t rows, index_t cols) {
  fmt::print("{:<15} {:<7} {:>5} {:<11} {:<12} {:>10}  {}\n", "format", "element", "group", "block scale",
             "tensor scale", "bits/w", "compressed-tensors format");
  all_formats::for_each([&](auto t) {
    using F = typename decltype(t)::type;
    std::string scale = "-";
    if constexpr (requires { typename F::scale_codec; }) scale = std::string(F::scale_codec::name);
    std::string group = std::is_same_v<F, BF16> ? "-" : F::group_size ? std::to_string(F::group_size) : "row";
    if constexpr (keeps_fp8_source<F>) {  // the source's tiles and their F32 scales
      group = fmt::format("{}x{}", F::keeps_source.rows, F::keeps_source.cols);
      scale = "F32";
    }
    const std::string bits = accepts<F>(rows, cols) ? fmt::format("{:.4f}", bits_per_weight<F>(rows, cols)) : "n/a";
    const std::string ct = F::scheme ? std::string(F::scheme->format)
                         : std::is_same_v<F, BF16> ? "unquantized (ignore list)" : "none (research only)";
    fmt::print("{:<15} {:<7} {:>5} {:<11} {:<12} {:>10}  {}\n", F::name, F::element::name, group, scale,
               F::has_tensor_scale ? "FP32" : "-", bits, ct);
  });
  fmt::print("bits/w: every stored byte (codes, block and tensor scales) of one {}x{} Linear per weight\n", rows, cols);
  fmt::print("FP8_SOURCE: a block-FP8 source's Linears as they came (available only for those)\n");
}

inline void add_formats_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("formats", "List the quantization formats pq knows");
  add_example(*cmd, "pq formats --rows 4096 --cols 14336");
  auto shape = std::make_shared<std::pair<index_t, index_t>>(4096, 4096);
  cmd->add_option("--rows", shape->first, "Rows (output features) of the Linear to price")->check(CLI::PositiveNumber);
  cmd->add_option("--cols", shape->second, "Columns (input features) of the Linear to price")->check(CLI::PositiveNumber);
  cmd->callback([shape] { print_formats(shape->first, shape->second); });
}

}  // namespace pq::cli
