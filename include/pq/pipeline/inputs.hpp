// pq/pipeline/inputs.hpp: stage 1 of `pq quantize`: every input opened and checked before any compute
// (the model, the formats, the budget, the calibration and evaluation tokens), then, where no calibration
// data was given, calibration sequences sampled from the model itself.
//
// Calibration comes from token tensors (--calib), text (--calib-text) or the model (self-calibration);
// evaluation from token tensors (--eval) or text (--eval-text), or, with --calib-text alone, from the
// text's last documents. Any calibration source combines with any evaluation source.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <utility>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <pq/io/export.hpp>
#include <pq/io/fp8_block.hpp>
#include <pq/model/architecture.hpp>
#include <pq/model/forward.hpp>
#include <pq/model/source_model.hpp>
#include <pq/model/tokens.hpp>
#include <pq/pipeline/format_table.hpp>
#include <pq/pipeline/options.hpp>
#include <pq/pipeline/progress.hpp>
#include <pq/pipeline/self_calibration.hpp>
#include <pq/pipeline/text_calibration.hpp>

namespace pq::pipeline {

struct job_inputs {
  job_inputs(std::unique_ptr<model::source_model> source, format_table f) : src(std::move(source)), formats(std::move(f)) {}
  std::unique_ptr<model::source_model> src;
  model::profile profile;
  format_table formats;
  quant_options quant;
  std::unique_ptr<model::runner> runner;
  std::optional<model::token_batch> calib, eval;
  nlohmann::json tokens = {{"calibration", nullptr}, {"evaluation", nullptr}};  // report.json: what was used for what
  std::optional<self_calibration_options> self;  // set when calibration is sampled from the model
};

namespace detail {

inline void take_first(std::optional<model::token_batch>& t, int n) {
  if (t && n > 0 && n < t->sequences) t = t->first(n);
}

inline std::string describe_tokens(const token_spec& s, const model::token_batch& t) {
  return s.text() + " (" + std::to_string(t.sequences) + "x" + std::to_string(t.length) + ")";
}

// Data-free calibration: what to sample, checked before any compute.
inline self_calibration_options self_calibration_plan(const quantize_options& o, const job_inputs& in) {
  self_calibration_options s;
  const std::int64_t vocab = in.src->shape().vocab;
  const auto start = start_token(in.src->dir().config_json());
  if (!start)
    throw pipeline_error(o.model->string() + "/config.json has neither bos_token_id nor eos_token_id to start "
                         "self-calibration from: give --calib or --calib-text, or --no-self-calibration");
  if (*start < 0 || *start >= vocab)
    throw pipeline_error(o.model->string() + "/config.json: start token " + std::to_string(*start) +
                         " is outside the vocabulary [0, " + std::to_string(vocab) + ")");
  s.start_token = *start;
  s.length = *o.seq_len > 0 ? *o.seq_len : in.eval ? in.eval->length : 256;
  s.sequences = *o.calib_samples > 0 ? *o.calib_samples : in.eval ? 64 : 128;
  if (*o.calib_windows > 0) s.sequences = std::min<Eigen::Index>(s.sequences, *o.calib_windows);
  if (s.length < 2) throw pipeline_error("--seq-len must be at least 2 for self-calibration");
  s.seed = *o.seed;
  return s;
}

// The budget is checked from the formats' stored bits alone, before calibration.
inline void check_budget_feasible(const quantize_options& o, const job_inputs& in) {
  std::int64_t min_bits = 0;
  for (const auto& u : in.profile.units) {
    std::optional<std::int64_t> best;
    for (std::size_t fi = 0; fi < in.formats.size(); ++fi)
      if (const auto b = in.formats.unit_bits(in.profile, u, fi); b && (!best || *b < *best)) best = b;
    if (!best)
      throw pipeline_error("decision unit " + u.name + " accepts none of the formats given (add BF16 to --formats)");
    min_bits += *best;
  }
  const double min_bpp = static_cast<double>(min_bits) / static_cast<double>(in.profile.quantizable_params());
  if (*o.target_bits + 1e-12 < min_bpp) {
    char msg[256];
    std::snprintf(msg, sizeof msg, "--target-bits %g is infeasible with formats %s: the smallest feasible budget is %.4f bits/weight",
                  *o.target_bits, in.formats.list().c_str(), min_bpp);
    throw pipeline_error(msg);
  }
}

// Calibration and evaluation tokens from token tensors and/or text, as the options name them.
inline void load_tokens(const quantize_options& o, job_inputs& in) {
  if (!o.calib->empty() && !o.calib_text->empty()) throw pipeline_error("--calib and --calib-text exclude each other");
  if (!o.eval->empty() && !o.eval_text->empty()) throw pipeline_error("--eval and --eval-text exclude each other");
  if (*o.seq_len < 0 || *o.calib_samples < 0 || *o.eval_samples < 0)
    throw pipeline_error("--seq-len, --calib-samples and --eval-samples must not be negative");
  const std::int64_t vocab = in.src->shape().vocab;
  std::optional<token_spec> calib_spec, eval_spec;
  if (!o.calib->empty()) calib_spec = parse_token_spec(*o.calib, "--calib", "calib");
  if (!o.eval->empty()) eval_spec = parse_token_spec(*o.eval, "--eval", "eval");
  if (calib_spec && eval_spec && calib_spec->text() == eval_spec->text())
    throw pipeline_error("--calib and --eval name the same tokens; calibration and evaluation must be disjoint");

  if (!o.calib_text->empty() || !o.eval_text->empty()) {
    text_request tr;
    tr.calib_text = *o.calib_text;
    tr.eval_text = *o.eval_text;
    if (*o.seq_len > 0) tr.seq_len = static_cast<std::size_t>(*o.seq_len);
    if (*o.calib_samples > 0) tr.calib_windows = static_cast<std::size_t>(*o.calib_samples);
    if (*o.eval_samples > 0) tr.eval_windows = static_cast<std::size_t>(*o.eval_samples);
    if (eval_spec) tr.eval_windows = 0;  // evaluation comes from tokens: hold nothing of the text out
    if (!tr.calib_text.empty() || !tr.eval_text.empty()) {
      auto t = load_text_tokens(*o.model, in.src->dir().config_json(), vocab, tr);
      if (t.calib) {
        in.calib = std::move(t.calib);
        in.tokens["calibration"] = t.calib_description;
      }
      if (t.eval) {
        in.eval = std::move(t.eval);
        in.tokens["evaluation"] = t.eval_description;
      }
      if (t.eval_dropped_documents >= 0) in.tokens["evaluation_documents_dropped"] = t.eval_dropped_documents;
    }
  }
  if (calib_spec) {
    in.calib = model::load_tokens(calib_spec->file, calib_spec->tensor, vocab);
    detail::take_first(in.calib, *o.calib_windows);
    in.tokens["calibration"] = describe_tokens(*calib_spec, *in.calib);
  } else {
    detail::take_first(in.calib, *o.calib_windows);
  }
  if (eval_spec) {
    in.eval = model::load_tokens(eval_spec->file, eval_spec->tensor, vocab);
    detail::take_first(in.eval, *o.eval_windows);
    in.tokens["evaluation"] = describe_tokens(*eval_spec, *in.eval);
  } else {
    detail::take_first(in.eval, *o.eval_windows);
  }
}

}  // namespace detail

// Opens and checks everything the job reads; throws pipeline_error (or the reader's error) naming the
// flag, file or tensor at fault before any compute starts.
inline job_inputs open_inputs(const quantize_options& o, std::FILE* log) {
  if (o.model->empty() || o.out->empty()) throw pipeline_error("--model and --out are required");
  if (*o.device != "cpu")
    throw pipeline_error("--device '" + *o.device + "': this version of pq runs the pipeline on the cpu only");
  io::check_output_dir(*o.out, *o.model, *o.force);
  auto src = std::make_unique<model::source_model>(*o.model);
  model::profile profile = model::make_profile(src->config());
  const auto fp8 = io::fp8_block_layout_of(src->dir().config_json(), (*o.model / "config.json").string());
  std::vector<source_encoding> sources;  // how the source stores each Linear (block FP8 or dense)
  for (const auto& l : profile.linears) sources.push_back(io::linear_encoding(src->dir(), fp8, l.name));
  job_inputs in(std::move(src), format_table(*o.formats, *o.method, std::move(sources)));
  in.profile = std::move(profile);
  model::run_options ro;
  if (*o.jobs > 0) ro.threads = *o.jobs;
  in.quant.method = *o.method;
  in.quant.threads = *o.jobs;
  in.runner = std::make_unique<model::runner>(in.src->weights(), in.src->shape(), ro);
  detail::load_tokens(o, in);
  if (!in.calib && !*o.self_calibration)
    std::fprintf(log, "warning: no calibration data and --no-self-calibration: costs are weight-only (H = I) and no "
                      "sensitivities are measured\n");
  if (!in.calib && *o.self_calibration) in.self = detail::self_calibration_plan(o, in);
  // SignRound trains each layer on its calibration activations; H = I gives it nothing to fit.
  if (is_signround(*o.method) && !in.calib && !in.self)
    throw pipeline_error("--rounding " + std::string(rounding_cli_name(*o.method)) +
                         " trains on calibration activations: give --calib or --calib-text, or drop --no-self-calibration");
  if (*o.signround_iters < 0) throw pipeline_error("--signround-iters must not be negative");
  detail::check_budget_feasible(o, in);
  for (const auto& f : in.formats)
    if (f.traits.needs_activation_stats && !in.calib && !in.self)
      throw pipeline_error(f.name + " quantizes activations and needs calibration data for its input_global_scale; "
                           "use NVFP4A16 for weight-only NVFP4");
  return in;
}

// Self-calibration, where open_inputs planned it: samples the calibration sequences from the model.
// Returns the seconds it took (0 when there was nothing to sample).
inline double self_calibrate(job_inputs& in, std::FILE* log) {
  if (!in.self || in.calib) return 0.0;
  const self_calibration_options& s = *in.self;
  std::fprintf(log, "self-calibration: no --calib or --calib-text: calibrating on %lld x %lld tokens sampled from the "
                    "model (seed %llu, temperature 1, from token %d)\n",
               static_cast<long long>(s.sequences), static_cast<long long>(s.length),
               static_cast<unsigned long long>(s.seed), s.start_token);
  progress bar("self-calibration", static_cast<long long>(s.length - 1), log);
  in.calib = generate_calibration(*in.runner, s, [&](Eigen::Index p, Eigen::Index) { bar.update(p); });
  in.tokens["calibration"] = describe(s);
  return bar.finish();
}

}  // namespace pq::pipeline
