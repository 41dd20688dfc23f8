// pq/pipeline/quantize.hpp: `pq quantize`, the whole job: calibration statistics and cost table (layer by layer) -> allocation
// over a Pareto sweep -> validation on measured KL (and polish) -> rounding -> export -> report.
// Surrogate costs only propose candidates; what ships is chosen on measured KL of the exact weights that
// the checkpoint holds.
#pragma once
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <pq/alloc/pareto.hpp>
#include <pq/alloc/report.hpp>
#include <pq/alloc/solver.hpp>
#include <pq/alloc/svg.hpp>
#include <pq/error.hpp>
#include <pq/formats/bundle.hpp>
#include <pq/io/export.hpp>
#include <pq/model/architecture.hpp>
#include <pq/model/calibration.hpp>
#include <pq/model/evaluation.hpp>
#include <pq/model/source_model.hpp>
#include <pq/pipeline/progress.hpp>
#include <pq/pipeline/resources.hpp>
#include <pq/pipeline/rounded_store.hpp>
#include <pq/pipeline/self_calibration.hpp>
#include <pq/pipeline/text_calibration.hpp>
#include <pq/quant/quantize_linear.hpp>

namespace pq::pipeline {

struct pipeline_error : pq::error {
  using pq::error::error;
};

// A token tensor inside a safetensors file, written `path:tensor` on the command line.
struct token_spec {
  std::filesystem::path file;
  std::string tensor;
  std::string text() const { return file.string() + ":" + tensor; }
};
inline token_spec parse_token_spec(const std::string& s, const std::string& flag) {
  const auto colon = s.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == s.size())
    throw pipeline_error(flag + " '" + s + "': expected FILE:TENSOR, e.g. tokens.safetensors:calib");
  return {s.substr(0, colon), s.substr(colon + 1)};
}

// Everything `pq quantize` takes, a flat aggregate (the CLI binds each field to a flag).
struct quantize_options {
  std::filesystem::path model, out;
  std::vector<std::string> formats{"NVFP4", "MXFP8_E4M3", "BF16"};
  double target_bits = 4.75;
  std::string calib, eval;      // FILE:TENSOR, may be empty
  std::filesystem::path calib_text, eval_text;  // text (plain, or .jsonl/.ndjson with "text"); exclusive with calib/eval
  int seq_len = 0;              // tokens per text window or generated sequence (0: the eval length, else 512 text / 256 generated)
  int calib_samples = 0;        // calibration windows of text, or generated sequences (0: 128; generated with eval: 64)
  int eval_samples = 0;         // evaluation windows of text (0: 64)
  bool self_calibration = true; // no calib, no calib_text: calibrate on sequences sampled from the model itself
  std::uint64_t seed = 0;       // of self-calibration's sampling
  rounding method = rounding::gptq_sweep;
  std::string pareto;           // LO:HI:STEP, empty: a default sweep around the target
  int jobs = 0;                 // threads, 0: all cores
  bool force = false;
  int polish_trials = 12;       // measured single-unit changes tried after selection
  int gradient_sequences = 32;  // calibration sequences that also run the backward pass
  int calib_windows = 0;        // use only the first N calibration windows (0: all)
  int eval_windows = 0;         // use only the first N evaluation windows (0: all)
  int selection_windows = 16;   // eval windows that candidate selection and polish measure on
  std::uint64_t max_shard_bytes = 5ull << 30;
  bool resume = true;           // reuse statistics cached in <out>.pq-work/ by an earlier run on the same inputs
};

namespace detail {

using clock = std::chrono::steady_clock;

// FNV-1a, for cache keys: stable across runs, platforms and standard libraries.
struct fnv1a {
  std::uint64_t h = 1469598103934665603ull;
  void add(const void* data, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) h = (h ^ static_cast<const unsigned char*>(data)[i]) * 1099511628211ull;
  }
  void add(const std::string& s) { add(s.data(), s.size() + 1); }
  template <class T> void add_value(const T& v) { add(&v, sizeof v); }
};

inline std::shared_ptr<linear_stats> identity_stats(const std::string& name, index_t cols) {
  auto s = std::make_shared<linear_stats>(name, cols);
  s->H.diagonal().setOnes();
  std::fill(s->x2_sum.begin(), s->x2_sum.end(), 1.0);
  s->count = 1;
  return s;
}

}  // namespace detail

class quantize_job {
 public:
  quantize_job(quantize_options o, std::FILE* log = stderr) : o_(std::move(o)), log_(log) {}

  nlohmann::json run() {
    const auto t0 = detail::clock::now();
    open_inputs();
    calibrate_and_price();
    allocate();
    validate();
    evaluate();
    export_checkpoint();
    report_["timings_s"]["total"] = seconds_since(t0);
    return report_;
  }

 private:
  // ---- stage 0: inputs, checked before any compute -------------------------------------------
  void open_inputs() {
    if (o_.model.empty() || o_.out.empty()) throw pipeline_error("--model and --out are required");
    io::check_output_dir(o_.out, o_.model, o_.force);
    src_ = std::make_unique<model::source_model>(o_.model);
    profile_ = model::make_profile(src_->config());
    for (const auto& f : o_.formats) visit_format(f, [](auto) {});  // unknown names: one clear error
    if (std::set<std::string>(o_.formats.begin(), o_.formats.end()).size() != o_.formats.size())
      throw pipeline_error("--formats lists a format twice");
    model::run_options ro;
    if (o_.jobs > 0) ro.threads = o_.jobs;
    qopt_.method = o_.method;
    qopt_.threads = o_.jobs;
    runner_ = std::make_unique<model::runner>(src_->weights(), src_->shape(), ro);
    const std::int64_t vocab = src_->shape().vocab;
    const bool from_text = !o_.calib_text.empty() || !o_.eval_text.empty();
    if (from_text && (!o_.calib.empty() || !o_.eval.empty()))
      throw pipeline_error(std::string(o_.calib_text.empty() ? "--eval-text" : "--calib-text") + " and " +
                           (o_.calib.empty() ? "--eval" : "--calib") +
                           " exclude each other: give calibration and evaluation data either as text or as token tensors");
    if (o_.seq_len < 0 || o_.calib_samples < 0 || o_.eval_samples < 0)
      throw pipeline_error("--seq-len, --calib-samples and --eval-samples must not be negative");
    if (from_text) {
      text_request tr;
      tr.calib_text = o_.calib_text;
      tr.eval_text = o_.eval_text;
      if (o_.seq_len > 0) tr.seq_len = static_cast<std::size_t>(o_.seq_len);
      if (o_.calib_samples > 0) tr.calib_windows = static_cast<std::size_t>(o_.calib_samples);
      if (o_.eval_samples > 0) tr.eval_windows = static_cast<std::size_t>(o_.eval_samples);
      auto t = load_text_tokens(o_.model, src_->dir().config_json(), vocab, tr);
      calib_ = std::move(t.calib);
      eval_ = std::move(t.eval);
      if (calib_ && o_.calib_windows > 0 && o_.calib_windows < calib_->sequences) calib_ = calib_->first(o_.calib_windows);
      if (eval_ && o_.eval_windows > 0 && o_.eval_windows < eval_->sequences) eval_ = eval_->first(o_.eval_windows);
      report_["tokens"]["calibration"] = calib_ ? nlohmann::json(t.calib_description) : nlohmann::json(nullptr);
      report_["tokens"]["evaluation"] = eval_ ? nlohmann::json(t.eval_description) : nlohmann::json(nullptr);
    } else if (!o_.calib.empty()) {
      const auto c = parse_token_spec(o_.calib, "--calib");
      calib_ = model::load_tokens(c.file, c.tensor, vocab);
      if (o_.calib_windows > 0 && o_.calib_windows < calib_->sequences) calib_ = calib_->first(o_.calib_windows);
      report_["tokens"]["calibration"] = c.text() + " (" + std::to_string(calib_->sequences) + "x" +
                                         std::to_string(calib_->length) + ")";
    }
    if (!from_text && !o_.eval.empty()) {
      const auto e = parse_token_spec(o_.eval, "--eval");
      if (!o_.calib.empty() && parse_token_spec(o_.calib, "--calib").text() == e.text())
        throw pipeline_error("--calib and --eval name the same tokens; calibration and evaluation must be disjoint");
      eval_ = model::load_tokens(e.file, e.tensor, vocab);
      if (o_.eval_windows > 0 && o_.eval_windows < eval_->sequences) eval_ = eval_->first(o_.eval_windows);
      report_["tokens"]["evaluation"] = e.text() + " (" + std::to_string(eval_->sequences) + "x" +
                                        std::to_string(eval_->length) + ")";
    } else if (!from_text) {
      report_["tokens"]["evaluation"] = nullptr;
    }
    if (!calib_ && !o_.self_calibration) {
      std::fprintf(log_, "warning: no calibration data and --no-self-calibration: costs are weight-only (H = I) and no "
                         "sensitivities are measured\n");
      report_["tokens"]["calibration"] = nullptr;
    }
    std::optional<self_calibration_options> self;
    if (!calib_ && o_.self_calibration) self = self_calibration_plan(vocab);
    check_budget_feasible();
    for (const auto& f : o_.formats)
      visit_format(f, [&](auto fmt) {
        using F = decltype(fmt);
        if constexpr (F::has_tensor_scale && F::scheme.has_value() && F::scheme->input_activations.has_value())
          if (!calib_ && !self)
            throw pipeline_error(std::string(F::name) + " quantizes activations and needs calibration data for its "
                                 "input_global_scale; use NVFP4A16 for weight-only NVFP4");
      });
    if (self) self_calibrate(*self);
  }

  // Data-free calibration: what to sample (checked before any compute) and the sampling itself.
  self_calibration_options self_calibration_plan(std::int64_t vocab) const {
    self_calibration_options s;
    const auto start = start_token(src_->dir().config_json());
    if (!start)
      throw pipeline_error(o_.model.string() + "/config.json has neither bos_token_id nor eos_token_id to start "
                           "self-calibration from: give --calib or --calib-text, or --no-self-calibration");
    if (*start < 0 || *start >= vocab)
      throw pipeline_error(o_.model.string() + "/config.json: start token " + std::to_string(*start) +
                           " is outside the vocabulary [0, " + std::to_string(vocab) + ")");
    s.start_token = *start;
    s.length = o_.seq_len > 0 ? o_.seq_len : eval_ ? eval_->length : 256;
    s.sequences = o_.calib_samples > 0 ? o_.calib_samples : eval_ ? 64 : 128;
    if (o_.calib_windows > 0) s.sequences = std::min<Eigen::Index>(s.sequences, o_.calib_windows);
    if (s.length < 2) throw pipeline_error("--seq-len must be at least 2 for self-calibration");
    s.seed = o_.seed;
    return s;
  }

  void self_calibrate(const self_calibration_options& s) {
    std::fprintf(log_, "self-calibration: no --calib or --calib-text: calibrating on %lld x %lld tokens sampled from the "
                       "model (seed %llu, temperature 1, from token %d)\n",
                 static_cast<long long>(s.sequences), static_cast<long long>(s.length),
                 static_cast<unsigned long long>(s.seed), s.start_token);
    progress bar("self-calibration", static_cast<long long>(s.length - 1), log_);
    calib_ = generate_calibration(*runner_, s, [&](Eigen::Index p, Eigen::Index) { bar.update(p); });
    report_["tokens"]["calibration"] = describe(s);
    report_["timings_s"]["self_calibration"] = bar.finish();
  }

  // The budget is checked from the formats' stored bits alone, before calibration.
  void check_budget_feasible() {
    std::int64_t min_bits = 0;
    for (const auto& u : profile_.units) {
      std::int64_t best = -1;
      for (const auto& f : o_.formats) {
        const std::int64_t b = unit_bits(u, f);
        if (b >= 0 && (best < 0 || b < best)) best = b;
      }
      if (best < 0)
        throw pipeline_error("decision unit " + u.name + " accepts none of the formats given (add BF16 to --formats)");
      min_bits += best;
    }
    const double min_bpp = static_cast<double>(min_bits) / static_cast<double>(profile_.quantizable_params());
    if (o_.target_bits + 1e-12 < min_bpp) {
      std::string list;
      for (const auto& f : o_.formats) list += (list.empty() ? "" : ",") + f;
      char msg[256];
      std::snprintf(msg, sizeof msg, "--target-bits %g is infeasible with formats %s: the smallest feasible budget is %.4f bits/weight",
                    o_.target_bits, list.c_str(), min_bpp);
      throw pipeline_error(msg);
    }
  }

  // Exact stored bits of a unit in format f, or -1 when a member's shape is not accepted.
  std::int64_t unit_bits(const model::decision_unit& u, const std::string& f) const {
    return visit_format(f, [&](auto fmt) -> std::int64_t {
      using F = decltype(fmt);
      std::int64_t bits = 0;
      for (int m : u.members) {
        const auto& l = profile_.linears[static_cast<std::size_t>(m)];
        if (!accepts<F>(l.rows, l.cols)) return -1;
        bits += stored_bytes<F>(l.rows, l.cols) * 8;
      }
      return bits;
    });
  }

  // ---- stages 1 and 2: calibration statistics and the cost table, layer by layer ----------------
  // Calibration runs the model one layer at a time; as soon as a layer has seen every calibration
  // sequence, every decision unit of that layer is rounded in every format exactly as it would ship
  // and stored on disk (rounded_store), and the layer's statistics are dropped. The sensitivities,
  // which need the backward pass, only scale the stored output errors afterwards. Resident at any
  // time: the calibration activations, one layer's statistics, one unit's weights and roundings.
  void calibrate_and_price() {
    const auto t0 = detail::clock::now();
    const std::uint64_t key = cache_key();
    const auto work = std::filesystem::path(o_.out.string() + ".pq-work");
    store_ = std::make_unique<rounded_store>(work / ("rounded-" + hex(key)), profile_);
    report_["work_dir"] = store_->dir().string();
    factor_.assign(profile_.linears.size(), 1.0);
    long long todo = 0;
    for (std::size_t ui = 0; ui < profile_.units.size(); ++ui)
      for (const auto& f : o_.formats)
        if (needs_rounding(ui, f)) todo += static_cast<long long>(profile_.units[ui].members.size());
    long long total = 0;
    for (std::size_t ui = 0; ui < profile_.units.size(); ++ui)
      for (const auto& f : o_.formats)
        if (f != "BF16" && unit_bits(profile_.units[ui], f) >= 0) total += static_cast<long long>(profile_.units[ui].members.size());
    report_["cost_table"] = {{"linear_roundings", total}, {"rounded_now", todo}, {"reused", total - todo}};
    const auto sens_file = store_->dir() / "sensitivities.json";
    if (calib_ && (todo > 0 || !(o_.resume && std::filesystem::exists(sens_file)))) {
      progress bar("calibrate + cost table", todo, log_);
      model::calibration_options co;
      co.gradient_sequences = std::min<Eigen::Index>(o_.gradient_sequences, calib_->sequences);
      const model::calibration_stats cs =
          model::calibrate_layers(*runner_, *calib_, co, [&](int layer, const model::layer_inputs& inputs) {
            std::map<const model::input_stats*, std::shared_ptr<const linear_stats>> sites;
            for (std::size_t i = 0; i < profile_.linears.size(); ++i) {
              const auto& l = profile_.linears[i];
              if (l.layer != layer) continue;
              const model::input_stats& in = *inputs.at(l.name);
              auto& site = sites[&in];
              if (!site) site = quant_stats(l, in);
              // predicted mean KL = 1/2 * s * tr(dW H dW^T) / T_model, and quant's output error is tr(dW H dW^T) / count.
              factor_[i] = 0.5 * static_cast<double>(in.tokens) / static_cast<double>(calib_->tokens());
            }
            for (std::size_t ui = 0; ui < profile_.units.size(); ++ui)
              if (profile_.units[ui].layer == layer)
                round_unit(ui, [&](const model::linear_info& l) { return sites.at(inputs.at(l.name).get()); }, bar);
          });
      for (std::size_t i = 0; i < profile_.linears.size(); ++i)
        factor_[i] *= cs.linears.at(profile_.linears[i].name).sensitivity;
      write_text_atomically(sens_file, nlohmann::json(factor_).dump() + "\n");
      bar.finish();
    } else if (calib_) {  // everything was rounded by an earlier run on the same inputs
      const auto j = nlohmann::json::parse(read_text(sens_file));
      factor_ = j.get<std::vector<double>>();
      if (factor_.size() != profile_.linears.size()) throw pipeline_error(sens_file.string() + ": does not match the model");
    } else {
      progress bar("cost table", todo, log_);
      for (std::size_t ui = 0; ui < profile_.units.size(); ++ui) {
        std::map<std::string, std::shared_ptr<const linear_stats>> identity;
        for (int m : profile_.units[ui].members) {
          const auto& l = profile_.linears[static_cast<std::size_t>(m)];
          identity[l.name] = detail::identity_stats(l.name, l.cols);
        }
        round_unit(ui, [&](const model::linear_info& l) { return identity.at(l.name); }, bar);
      }
      bar.finish();
    }
    build_problem();
    report_["timings_s"]["calibration_and_cost_table"] = seconds_since(t0);
  }

  // Everything the stored roundings depend on: the source (config, weight files by name, size and
  // modification time), the calibration tokens and the rounding options; not the budget or the formats.
  std::uint64_t cache_key() const {
    detail::fnv1a key;
    key.add(src_->dir().config_json().dump());
    for (const auto& f : src_->dir().files()) {
      const auto path = o_.model / f;
      key.add(f);
      key.add_value(std::filesystem::file_size(path));
      key.add_value(std::filesystem::last_write_time(path).time_since_epoch().count());
    }
    if (calib_) {
      key.add(calib_->ids.data(), calib_->ids.size() * sizeof(std::int32_t));
      key.add_value(calib_->length);
      key.add_value(std::min<Eigen::Index>(o_.gradient_sequences, calib_->sequences));
    } else {
      key.add("identity");
    }
    key.add_value(qopt_.method);
    key.add_value(qopt_.block_size);
    key.add_value(qopt_.damping);
    key.add_value(qopt_.damping_candidates);
    key.add_value(qopt_.act_order);
    key.add_value(qopt_.sweep_candidates);
    key.add_value(qopt_.sweep_lo);
    key.add_value(qopt_.sweep_hi);
    return key.h;
  }

  bool needs_rounding(std::size_t ui, const std::string& f) const {
    return f != "BF16" && unit_bits(profile_.units[ui], f) >= 0 && !(o_.resume && store_->has(ui, f));
  }

  // The statistics quant/ consumes, from the ones calibration measured at one input site.
  static std::shared_ptr<const linear_stats> quant_stats(const model::linear_info& l, const model::input_stats& in) {
    auto s = std::make_shared<linear_stats>(l.name, l.cols);
    s->H = in.xtx;
    for (index_t j = 0; j < l.cols; ++j) s->x2_sum[static_cast<std::size_t>(j)] = in.mean_sq(j) * static_cast<double>(in.tokens);
    s->amax = in.amax;
    s->count = in.tokens;
    return s;
  }

  // Rounds every member of unit `ui` in every format it still lacks and stores the result.
  template <class StatsOf>
  void round_unit(std::size_t ui, StatsOf&& stats_of, progress& bar) {
    const auto& u = profile_.units[ui];
    std::vector<std::vector<float>> weights;  // loaded only when some format needs them
    float unit_amax = 0.0f, input_amax = 0.0f;
    for (const auto& f : o_.formats) {
      if (!needs_rounding(ui, f)) continue;
      if (weights.empty())
        for (int m : u.members) {
          const auto& l = profile_.linears[static_cast<std::size_t>(m)];
          weights.push_back(io::to_float(src_->dir().tensor(l.name + ".weight")));
          unit_amax = std::max(unit_amax, weight_amax(weights.back(), l.name));
          input_amax = std::max(input_amax, stats_of(l)->amax);
        }
      visit_format(f, [&](auto fmt) {
        using F = decltype(fmt);
        gptq_factor_cache factors;  // members sharing an input site share H's factorization
        std::vector<std::vector<packed_tensor>> tensors;
        std::vector<double> errors;
        for (std::size_t k = 0; k < u.members.size(); ++k) {
          const auto& l = profile_.linears[static_cast<std::size_t>(u.members[k])];
          const auto stats = stats_of(l);
          const linear_input in{l.name, weights[k], l.rows, l.cols, stats.get(), unit_amax, 1.0, nullptr};
          auto res = quantize_linear<F>(in, qopt_, &factors);
          tensors.push_back(pack(res.q, input_amax));
          errors.push_back(res.output_error);
          bar.advance();
        }
        store_->put(ui, f, tensors, errors);
      });
    }
  }

  // The knapsack instance: a unit's loss in a format is the sum over its members of sensitivity x output error.
  void build_problem() {
    problem_.format_names = o_.formats;
    for (std::size_t ui = 0; ui < profile_.units.size(); ++ui) {
      const auto& u = profile_.units[ui];
      alloc::Unit unit{u.name, 0, {}, {}};
      for (int m : u.members) {
        unit.params += profile_.linears[static_cast<std::size_t>(m)].params();
        unit.members.push_back(profile_.linears[static_cast<std::size_t>(m)].name);
      }
      for (std::size_t fi = 0; fi < o_.formats.size(); ++fi) {
        const std::int64_t bits = unit_bits(u, o_.formats[fi]);
        if (bits < 0) continue;
        double loss = 0.0;
        if (o_.formats[fi] != "BF16") {
          const auto errors = store_->output_errors(ui, o_.formats[fi]);
          for (std::size_t k = 0; k < u.members.size(); ++k) loss += factor_[static_cast<std::size_t>(u.members[k])] * errors[k];
        }
        unit.options.push_back({static_cast<int>(fi), bits, loss});
      }
      problem_.units.push_back(std::move(unit));
    }
  }

  static std::string hex(std::uint64_t v) {
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
    return buf;
  }
  static std::string read_text(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    if (!in) throw pipeline_error(p.string() + ": cannot read");
    return {std::istreambuf_iterator<char>(in), {}};
  }
  static void write_text_atomically(const std::filesystem::path& p, const std::string& text) {
    const auto tmp = std::filesystem::path(p.string() + ".tmp");
    {
      std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
      out << text;
      if (!out) throw pipeline_error(tmp.string() + ": write failed");
    }
    std::filesystem::rename(tmp, p);
  }

  // ---- stage 3: allocation over a Pareto sweep ---------------------------------------------------
  void allocate() {
    const auto t0 = detail::clock::now();
    solver_ = std::make_unique<alloc::Solver>(problem_);
    std::vector<double> targets;
    if (!o_.pareto.empty()) {
      targets = alloc::parse_budget_range(o_.pareto).targets();
    } else {  // default: every 1/8 bit from the smallest feasible budget to 16
      for (double b = std::ceil(solver_->min_bpp() * 8.0) / 8.0; b <= std::min(16.0, solver_->max_useful_bpp() + 0.125); b += 0.125)
        targets.push_back(b);
    }
    targets.erase(std::remove_if(targets.begin(), targets.end(), [&](double t) { return t < solver_->min_bpp(); }),
                  targets.end());
    curve_ = alloc::sweep(*solver_, targets);
    knee_ = alloc::knee(curve_);
    target_ = solver_->solve(o_.target_bits);
    report_["timings_s"]["allocation"] = seconds_since(t0);
  }

  // ---- stage 4: validation on measured KL, then polish -----------------------------------------
  std::vector<std::string> linear_formats(const std::vector<int>& unit_formats) const {
    std::vector<std::string> formats(profile_.linears.size());
    for (std::size_t ui = 0; ui < profile_.units.size(); ++ui)
      for (int m : profile_.units[ui].members)
        formats[static_cast<std::size_t>(m)] = o_.formats[static_cast<std::size_t>(unit_formats[ui])];
    return formats;
  }

  // Measured KL of an assignment: the stored roundings, dequantized one layer at a time.
  model::eval_result measure(const model::reference_cache& ref, const std::vector<int>& unit_formats) {
    const rounded_weights w(src_->weights(), profile_, *store_, linear_formats(unit_formats));
    return ref.evaluate(w, w.first_changed(src_->shape().layers));
  }

  std::int64_t bits_of(const std::vector<int>& unit_formats) const {
    std::int64_t b = 0;
    for (std::size_t ui = 0; ui < unit_formats.size(); ++ui)
      for (const auto& opt : problem_.units[ui].options)
        if (opt.format == unit_formats[ui]) b += opt.stored_bits;
    return b;
  }

  void validate() {
    const auto t0 = detail::clock::now();
    chosen_ = target_.format;
    nlohmann::json measured = nlohmann::json::array();
    if (!eval_) {
      std::fprintf(log_, "warning: no --eval tokens: the allocation is not validated on measured KL\n");
      report_["timings_s"]["validation"] = 0.0;
      return;
    }
    // Selection measures on the first windows of the eval split (at most half of it); the report on all.
    const Eigen::Index n = std::max<Eigen::Index>(1, std::min<Eigen::Index>(o_.selection_windows, eval_->sequences / 2));
    const model::reference_cache select(*runner_, eval_->first(n));
    report_["tokens"]["selection"] = "the first " + std::to_string(n) + " evaluation windows";
    const std::int64_t budget = alloc::budget_bits(o_.target_bits, solver_->params());
    std::vector<std::pair<std::string, const alloc::Assignment*>> candidates{{"target", &target_}};
    if (knee_ && curve_[*knee_].bits <= budget) candidates.push_back({"knee", &curve_[*knee_]});
    for (std::size_t i = 0; i < curve_.size(); ++i)  // the two sweep points just below the target
      if (curve_[i].bits <= budget && curve_[i].target_bpp < o_.target_bits && curve_[i].target_bpp >= o_.target_bits - 0.25)
        candidates.push_back({"sweep", &curve_[i]});
    progress bar("validate", static_cast<long long>(candidates.size()) + o_.polish_trials, log_);
    double best_kl = INFINITY;
    for (const auto& [why, a] : candidates) {
      const auto r = measure(select, a->format);
      measured.push_back({{"candidate", why}, {"bpp", a->bpp}, {"predicted", a->loss}, {"kl_selection", r.kl}});
      kl_at_[a->bpp] = r.kl;
      if (r.kl < best_kl) {
        best_kl = r.kl;
        chosen_ = a->format;
      }
      bar.advance();
    }
    polish(select, budget, best_kl, measured, bar);
    report_["validation"] = measured;
    report_["timings_s"]["validation"] = bar.finish();
    (void)t0;
  }

  // Single decision-unit changes, proposed by the surrogate (largest predicted gain per bit first) and
  // accepted only when measured KL improves and the budget holds. A change that does not fit the
  // leftover bits is paid for by the cheapest predicted downgrade of another unit.
  void polish(const model::reference_cache& ref, std::int64_t budget, double& best_kl, nlohmann::json& measured,
              progress& bar) {
    struct move { double gain; std::size_t unit; int to; };
    std::vector<move> moves;
    for (std::size_t ui = 0; ui < problem_.units.size(); ++ui) {
      const alloc::Option* cur = option_of(ui, chosen_[ui]);
      for (const auto& opt : problem_.units[ui].options)
        if (opt.stored_bits > cur->stored_bits && opt.loss < cur->loss)
          moves.push_back({(cur->loss - opt.loss) / static_cast<double>(opt.stored_bits - cur->stored_bits), ui, opt.format});
    }
    std::sort(moves.begin(), moves.end(), [](const move& a, const move& b) { return a.gain > b.gain; });
    int tried = 0;
    for (const move& mv : moves) {
      if (tried >= o_.polish_trials) break;
      std::vector<int> cand = chosen_;
      cand[mv.unit] = mv.to;
      std::int64_t over = bits_of(cand) - budget;
      // pay for it with the downgrade of another unit that costs the least predicted loss
      if (over > 0) {
        double best_cost = INFINITY;
        std::pair<std::size_t, int> pay{0, -1};
        for (std::size_t vi = 0; vi < problem_.units.size(); ++vi) {
          if (vi == mv.unit) continue;
          const alloc::Option* cur = option_of(vi, cand[vi]);
          for (const auto& opt : problem_.units[vi].options)
            if (cur->stored_bits - opt.stored_bits >= over && opt.loss - cur->loss < best_cost) {
              best_cost = opt.loss - cur->loss;
              pay = {vi, opt.format};
            }
        }
        if (pay.second < 0) continue;
        cand[pay.first] = pay.second;
      }
      if (bits_of(cand) > budget) continue;
      ++tried;
      const auto r = measure(ref, cand);
      const bool accept = r.kl < best_kl;
      measured.push_back({{"candidate", "polish"}, {"unit", problem_.units[mv.unit].name},
                          {"to", o_.formats[static_cast<std::size_t>(mv.to)]},
                          {"bpp", static_cast<double>(bits_of(cand)) / static_cast<double>(solver_->params())},
                          {"kl_selection", r.kl}, {"accepted", accept}});
      if (accept) {
        best_kl = r.kl;
        chosen_ = cand;
      }
      bar.advance();
    }
  }

  const alloc::Option* option_of(std::size_t unit, int format) const {
    for (const auto& o : problem_.units[unit].options)
      if (o.format == format) return &o;
    throw pipeline_error("internal: unit without its chosen option");
  }

  // ---- stage 6: export (the rounding happened in the cost table) and the report --------------------
  void export_checkpoint() {
    const auto t0 = detail::clock::now();
    const std::vector<std::string> formats = linear_formats(chosen_);
    fill_report(formats);
    io::export_options eo;
    eo.max_shard_bytes = o_.max_shard_bytes;
    eo.force = o_.force;
    io::ct_export ex(src_->dir(), profile_, formats, o_.out, eo);
    progress bar("export", static_cast<long long>(profile_.linears.size()), log_);
    for (std::size_t i = 0; i < profile_.linears.size(); ++i) {
      if (formats[i] != "BF16") ex.write_linear(i, store_->tensors(i, formats[i]));
      bar.advance();
    }
    report_["timings_s"]["export"] = seconds_since(t0);
    report_["peak_rss_bytes"] = peak_rss_bytes();
    ex.add_file("report.json", report_.dump(2) + "\n");
    ex.add_file("pareto.svg", alloc::pareto_svg(curve_, knee_, nullptr));
    ex.finish();
    bar.finish();
  }

  void fill_report(const std::vector<std::string>& formats) {
    const std::int64_t bits = bits_of(chosen_);
    const double params = static_cast<double>(solver_->params());
    report_["model"] = o_.model.string();
    report_["formats"] = o_.formats;
    report_["rounding"] = std::string(rounding_name(o_.method));
    report_["target_bpp"] = o_.target_bits;
    report_["achieved_bpp"] = static_cast<double>(bits) / params;
    double predicted = 0;
    for (std::size_t ui = 0; ui < chosen_.size(); ++ui) predicted += option_of(ui, chosen_[ui])->loss;
    report_["predicted_loss"] = predicted;
    std::map<std::string, std::int64_t> counts;
    nlohmann::json assignment;
    for (std::size_t i = 0; i < formats.size(); ++i) {
      ++counts[formats[i]];
      assignment[profile_.linears[i].name] = formats[i];
    }
    report_["counts"] = counts;
    report_["assignment"] = assignment;
    nlohmann::json pareto = nlohmann::json::array();
    for (const auto& a : curve_) {
      nlohmann::json p{{"target_bpp", a.target_bpp}, {"bpp", a.bpp}, {"predicted", a.loss}};
      if (const auto it = kl_at_.find(a.bpp); it != kl_at_.end()) p["kl_selection"] = it->second;
      pareto.push_back(p);
    }
    report_["pareto"] = pareto;
    report_["knee"] = knee_ ? nlohmann::json(curve_[*knee_].bpp) : nlohmann::json(nullptr);
  }

  // ---- stage 5: the shipped assignment measured on the whole eval split ---------------------------
  void evaluate() {
    if (!eval_) return;
    progress bar("evaluate", 1, log_);
    const model::reference_cache ref(*runner_, *eval_);
    const auto shipped = measure(ref, chosen_);
    report_["source"] = {{"nll", ref.reference().nll}};
    report_["shipped"] = {{"kl", shipped.kl}, {"nll", shipped.nll}};
    report_["timings_s"]["evaluation"] = bar.finish();
  }

  static double seconds_since(detail::clock::time_point t0) {
    return std::chrono::duration<double>(detail::clock::now() - t0).count();
  }

  quantize_options o_;
  std::FILE* log_;
  quant_options qopt_;
  std::unique_ptr<model::source_model> src_;
  model::profile profile_;
  std::unique_ptr<model::runner> runner_;
  std::optional<model::token_batch> calib_, eval_;
  std::unique_ptr<rounded_store> store_;
  std::vector<double> factor_;  // per Linear: predicted loss per unit of quant's output error
  alloc::Problem problem_;
  std::unique_ptr<alloc::Solver> solver_;
  std::vector<alloc::Assignment> curve_;
  std::optional<std::size_t> knee_;
  alloc::Assignment target_;
  std::vector<int> chosen_;
  std::map<double, double> kl_at_;
  nlohmann::json report_;
};

inline nlohmann::json run_quantize(const quantize_options& o, std::FILE* log = stderr) {
  quantize_job job(o, log);
  return job.run();
}

}  // namespace pq::pipeline
