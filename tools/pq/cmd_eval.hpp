// pq eval: KL(p_source || p_quantized) and NLL of an exported checkpoint, read back from disk, on eval tokens.
#pragma once
#include <pq/model/evaluation.hpp>
#include <pq/model/quantized_weights.hpp>
#include <pq/model/source_model.hpp>
#include <pq/pipeline/options.hpp>

#include "options_cli.hpp"

#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>

namespace pq::cli {

struct eval_args {
  std::string model, quantized, tokens;  // tokens: FILE[:TENSOR], the tensor "eval" by default
  long sequences = 0;  // 0: all
  int threads = 0;     // 0: all hardware threads
};

inline void run_eval(const eval_args& a) {
  using namespace pq::model;
  const auto t0 = std::chrono::steady_clock::now();
  const source_model source(a.model);
  const io::ct_checkpoint ct = io::ct_checkpoint::open(a.quantized);
  const quantized_weights quantized(ct);
  // Same model as the source, every tensor present with its shape.
  check_checkpoint(quantized, source.shape(), a.quantized + " (checked against " + a.model + "/config.json)");

  const pipeline::token_spec spec = pipeline::parse_token_spec(a.tokens, "--tokens", "eval");
  token_batch tokens = load_tokens(spec.file, spec.tensor, source.shape().vocab);
  if (a.sequences > 0) tokens = tokens.first(a.sequences);
  run_options opt;
  if (a.threads > 0) opt.threads = a.threads;
  const runner run(source.weights(), source.shape(), opt);
  const reference_cache cache(run, tokens);
  const eval_result q = cache.evaluate(quantized, 0);

  std::map<std::string, int> counts;
  for (const auto& f : ct.formats) ++counts[f];
  std::string formats;
  for (const auto& [f, n] : counts) formats += fmt::format("{}{} x{}", formats.empty() ? "" : ", ", f, n);
  fmt::print("tokens     {} ({} sequences x {})\n", spec.text(), tokens.sequences, tokens.length);
  fmt::print("formats    {}\n", formats);
  fmt::print("KL         {:.6g} nats/token (mean over {} positions)\n", q.kl, q.kl_positions);
  fmt::print("NLL        {:.5f} quantized, {:.5f} source (ppl {:.3f} vs {:.3f}, {} positions)\n", q.nll,
             cache.reference().nll, std::exp(q.nll), std::exp(cache.reference().nll), q.nll_positions);
  fmt::print("time       {:.1f} s\n", std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
}

inline void add_eval_commands(CLI::App& app) {
  auto args = std::make_shared<eval_args>();
  CLI::App* cmd = app.add_subcommand("eval", "KL and NLL of a quantized checkpoint against its source model");
  cmd->add_option("--model", args->model, "source Hugging Face checkpoint directory")->required()->check(CLI::ExistingDirectory);
  cmd->add_option("--quantized", args->quantized, "exported compressed-tensors checkpoint directory")
      ->required()
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--tokens", args->tokens,
                  "Evaluation tokens FILE[:TENSOR] (tensor default: eval): a [sequences, length] I32/I64 tensor")
      ->required();
  cmd->add_option("--sequences", args->sequences, "use only the first N sequences (0: all)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--threads", args->threads, "worker threads (0: all hardware threads)")->check(CLI::NonNegativeNumber);
  add_example(*cmd, "pq eval --model M --quantized M-pq --tokens M/tokens.safetensors:eval --sequences 32");
  cmd->callback([args] { run_eval(*args); });
}

}  // namespace pq::cli
