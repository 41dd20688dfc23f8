// `pq quantize`: the whole pipeline (see include/pq/pipeline/quantize.hpp), and its summary table.
#pragma once
#include <map>
#include <memory>

#include <CLI/CLI.hpp>
#include <fmt/core.h>
#include <fmt/ranges.h>

#include <pq/pipeline/quantize.hpp>

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
  auto formats = std::make_shared<std::string>("NVFP4,MXFP8_E4M3,BF16");
  auto method = std::make_shared<std::string>("gptq+sweep");
  auto no_self = std::make_shared<bool>(false);
  auto* cmd = app.add_subcommand("quantize", "Calibrate, allocate formats under a bit budget, validate on measured KL, "
                                             "round and export a compressed-tensors checkpoint");
  cmd->add_option("--model", o->model, "Hugging Face model directory (read only)")->required();
  cmd->add_option("--out", o->out, "Output directory (must not exist unless --force)")->required();
  cmd->add_option("--formats", *formats, "Candidate formats, comma separated (see pq formats)")->capture_default_str();
  cmd->add_option("--target-bits", o->target_bits, "Budget: average bits per weight of the quantizable Linears")->capture_default_str();
  cmd->add_option("--calib", o->calib, "Calibration tokens FILE:TENSOR, e.g. tokens.safetensors:calib");
  cmd->add_option("--eval", o->eval, "Evaluation tokens FILE:TENSOR, disjoint from --calib");
  cmd->add_option("--calib-text", o->calib_text,
                  "Calibration text (plain, or .jsonl/.ndjson with a \"text\" field), tokenized by the model's "
                  "tokenizer.json; without --eval-text its last documents are held out for evaluation");
  cmd->add_option("--eval-text", o->eval_text, "Evaluation text, sharing no document with --calib-text");
  cmd->add_option("--seq-len", o->seq_len,
                  "Tokens per text window or self-generated sequence (0: the eval length, else 512 for text, 256 generated)")
      ->capture_default_str();
  cmd->add_option("--calib-samples", o->calib_samples,
                  "Calibration windows of --calib-text, or self-generated sequences (0: 128; generated with eval: 64)")
      ->capture_default_str();
  cmd->add_option("--eval-samples", o->eval_samples, "Evaluation windows of text (0: 64)")->capture_default_str();
  cmd->add_option("--seed", o->seed, "Seed of self-calibration's sampling")->capture_default_str();
  cmd->add_flag("--no-self-calibration", *no_self,
                "Without calibration data, do not sample calibration sequences from the model: weight-only costs (H = I)");
  cmd->add_option("--rounding", *method, "rtn | sweep | gptq | gptq+sweep")->capture_default_str();
  cmd->add_option("--pareto", o->pareto, "Budgets of the Pareto sweep LO:HI:STEP (default: the feasible range by 1/8)");
  cmd->add_option("--jobs", o->jobs, "Threads (0: all cores)")->capture_default_str();
  cmd->add_option("--calib-windows", o->calib_windows, "Use the first N calibration windows (0: all)")->capture_default_str();
  cmd->add_option("--eval-windows", o->eval_windows, "Use the first N evaluation windows (0: all)")->capture_default_str();
  cmd->add_option("--selection-windows", o->selection_windows, "Eval windows candidate selection measures on")->capture_default_str();
  cmd->add_option("--polish", o->polish_trials, "Measured single-unit changes tried after selection")->capture_default_str();
  cmd->add_option("--device", [](const CLI::results_t& v) { return v.size() == 1 && v[0] == "cpu"; },
                  "cpu (cuda: not in this build)");
  cmd->add_flag("--force", o->force, "Replace an existing output directory");
  cmd->add_flag_callback("--no-resume", [o] { o->resume = false; },
                         "Round everything again instead of reusing <out>.pq-work/ from an earlier run on the same inputs");
  cmd->callback([o, formats, method, no_self] {
    o->self_calibration = !*no_self;
    o->formats.clear();
    std::string cur;
    for (char c : *formats + ",") {
      if (c == ',') {
        if (!cur.empty()) o->formats.push_back(cur);
        cur.clear();
      } else if (c != ' ') {
        cur += c;
      }
    }
    const std::map<std::string, rounding> methods{
        {"rtn", rounding::rtn}, {"sweep", rounding::sweep}, {"gptq", rounding::gptq}, {"gptq+sweep", rounding::gptq_sweep}};
    const auto it = methods.find(*method);
    if (it == methods.end()) throw pipeline::pipeline_error("--rounding '" + *method + "': expected rtn, sweep, gptq or gptq+sweep");
    o->method = it->second;
    const auto report = pipeline::run_quantize(*o);
    print_summary(report);
    fmt::print("{:<22} {}\n", "checkpoint", o->out.string());
  });
}

}  // namespace pq::cli
