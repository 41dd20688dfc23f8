// pq/pipeline/cost_table.hpp: stage 2 of `pq quantize`: calibration statistics and the cost table, layer by
// layer, and from them the knapsack instance the selection solves.
//
// Calibration runs the model one layer at a time; as soon as a layer has seen every calibration sequence,
// every decision unit of that layer is rounded in every format exactly as it would ship and stored on disk
// (rounded_store), and the layer's statistics are dropped. The sensitivities, which need the backward pass,
// only scale the stored output errors afterwards. Resident at any time: the calibration activations, one
// layer's statistics, one unit's weights and roundings. The store sits in a work folder keyed by everything
// the roundings depend on, so a rerun on the same inputs (another budget, a subset of the formats) reuses it.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/pfr.hpp>
#include <nlohmann/json.hpp>

#include <pq/alloc/problem.hpp>
#include <pq/core/hash.hpp>
#include <pq/io/atomic_file.hpp>
#include <pq/model/calibration.hpp>
#include <pq/pipeline/inputs.hpp>
#include <pq/pipeline/options.hpp>
#include <pq/pipeline/progress.hpp>
#include <pq/pipeline/rounded_store.hpp>
#include <pq/pipeline/signround_pass.hpp>
#include <pq/quant/quantize_linear.hpp>

namespace pq::pipeline {

struct cost_table {
  std::unique_ptr<rounded_store> store;
  std::vector<double> factor;  // per Linear: predicted loss per unit of quant's output error
  alloc::Problem problem;      // one option per (unit, format that accepts it): stored bits, predicted loss
  nlohmann::json summary;      // report.json "cost_table": roundings made now and reused
  // --rounding signround | gptq+signround: per format, per unit, which rounding the store holds and the
  // block-output errors that decided it (signround.json in the store); null for the per-Linear roundings.
  nlohmann::json signround;
};

namespace detail {

inline std::string hex(std::uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

inline std::string read_text(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw pipeline_error(p.string() + ": cannot read");
  return {std::istreambuf_iterator<char>(in), {}};
}

inline std::shared_ptr<linear_stats> identity_stats(const std::string& name, index_t cols) {
  auto s = std::make_shared<linear_stats>(name, cols);
  s->H.diagonal().setOnes();
  std::fill(s->x2_sum.begin(), s->x2_sum.end(), 1.0);
  s->count = 1;
  return s;
}

// The statistics quant/ consumes, from the ones calibration measured at one input site.
inline std::shared_ptr<const linear_stats> quant_stats(const model::linear_info& l, const model::input_stats& in) {
  auto s = std::make_shared<linear_stats>(l.name, l.cols);
  s->H = in.xtx;
  for (index_t j = 0; j < l.cols; ++j) s->x2_sum[static_cast<std::size_t>(j)] = in.mean_sq(j) * static_cast<double>(in.tokens);
  s->amax = in.amax;
  s->count = in.tokens;
  return s;
}

}  // namespace detail

// Everything the stored roundings depend on: the source (config, weight files by name, size and
// modification time), the calibration tokens, the keyed options and the rounding's own options (all of
// quant_options but the thread count, which does not change results). Not the budget or the formats.
inline std::uint64_t work_key(const job_inputs& in, const quantize_options& o) {
  fnv1a key;
  key.text(in.src->dir().config_json().dump());
  for (const auto& f : in.src->dir().files()) {
    const auto path = *o.model / f;
    key.text(f);
    key.integer(static_cast<std::uint64_t>(std::filesystem::file_size(path)));
    key.integer(static_cast<std::int64_t>(std::filesystem::last_write_time(path).time_since_epoch().count()));
  }
  if (in.calib) {
    for (std::int32_t id : in.calib->ids) key.integer(id);
    key.integer(static_cast<std::int64_t>(in.calib->length));
    key.integer(static_cast<std::int64_t>(std::min<Eigen::Index>(*o.gradient_sequences, in.calib->sequences)));
  } else {
    key.text("identity");
  }
  hash_keyed_options(key, o);
  quant_options q = in.quant;
  q.threads = 0;
  boost::pfr::for_each_field(q, [&](const auto& f) {
    if constexpr (std::is_floating_point_v<std::remove_cvref_t<decltype(f)>>) key.floating(f);
    else key.integer(f);
  });
  return key.value;
}

class cost_table_builder {
 public:
  cost_table_builder(const job_inputs& in, const quantize_options& o, std::FILE* log) : in_(in), o_(o), log_(log) {}

  cost_table build() {
    const auto work = o_.work->empty() ? std::filesystem::path(o_.out->string() + ".pq-work") : *o_.work;
    t_.store = std::make_unique<rounded_store>(work / ("rounded-" + detail::hex(work_key(in_, o_))), in_.profile);
    t_.factor.assign(in_.profile.linears.size(), 1.0);
    const auto sr_file = t_.store->dir() / "signround.json";
    if (is_signround(*o_.method))
      t_.signround = *o_.resume && std::filesystem::exists(sr_file) ? nlohmann::json::parse(detail::read_text(sr_file))
                                                                    : nlohmann::json::object();
    long long todo = 0, total = 0;
    for (std::size_t ui = 0; ui < in_.profile.units.size(); ++ui)
      for (std::size_t fi = 0; fi < in_.formats.size(); ++fi) {
        const auto n = static_cast<long long>(in_.profile.units[ui].members.size());
        if (in_.formats.rounds(in_.profile, in_.profile.units[ui], fi)) total += n;
        if (needs_rounding(ui, fi)) todo += n;
      }
    t_.summary = {{"linear_roundings", total}, {"rounded_now", todo}, {"reused", total - todo}};
    const auto sens_file = t_.store->dir() / "sensitivities.json";
    if (in_.calib && (todo > 0 || !(*o_.resume && std::filesystem::exists(sens_file)))) {
      calibrate_and_round(todo);
      io::write_text_atomically(sens_file, nlohmann::json(t_.factor).dump() + "\n");
      if (is_signround(*o_.method)) io::write_text_atomically(sr_file, t_.signround.dump(1) + "\n");
    } else if (in_.calib) {  // everything was rounded by an earlier run on the same inputs
      t_.factor = nlohmann::json::parse(detail::read_text(sens_file)).get<std::vector<double>>();
      if (t_.factor.size() != in_.profile.linears.size()) throw pipeline_error(sens_file.string() + ": does not match the model");
    } else {
      progress bar("cost table", todo, log_);
      for (std::size_t ui = 0; ui < in_.profile.units.size(); ++ui) {
        std::map<std::string, std::shared_ptr<const linear_stats>> identity;
        for (int m : in_.profile.units[ui].members) {
          const auto& l = in_.profile.linears[static_cast<std::size_t>(m)];
          identity[l.name] = detail::identity_stats(l.name, l.cols);
        }
        round_unit(ui, [&](const model::linear_info& l) { return identity.at(l.name); }, bar);
      }
      bar.finish();
    }
    build_problem();
    return std::move(t_);
  }

 private:
  // A stored rounding is reused only if it is final: for SignRound, if the block pass finished in its format
  // (signround.json lists the format; a run stopped inside the pass leaves per-Linear roundings in the store).
  bool needs_rounding(std::size_t ui, std::size_t fi) const {
    if (!in_.formats.rounds(in_.profile, in_.profile.units[ui], fi)) return false;
    const auto& f = in_.formats[fi].name;
    const bool final = !is_signround(*in_.formats[fi].method) || t_.signround.contains(f);
    return !(*o_.resume && final && t_.store->has(ui, f));
  }

  // The formats the SignRound pass trains: those with a rounding made now (all of a format's units are then
  // made now, see needs_rounding).
  std::vector<std::string> signround_formats() const {
    std::vector<std::string> out;
    if (!is_signround(*o_.method)) return out;
    for (std::size_t fi = 0; fi < in_.formats.size(); ++fi)
      for (std::size_t ui = 0; ui < in_.profile.units.size(); ++ui)
        if (needs_rounding(ui, fi) && is_signround(*in_.formats[fi].method)) {  // BF16 of FP8 weights: to nearest
          out.push_back(in_.formats[fi].name);
          break;
        }
    return out;
  }

  void calibrate_and_round(long long todo) {
    const auto& p = in_.profile;
    progress bar("calibrate + cost table", todo, log_);
    model::calibration_options co;
    co.gradient_sequences = std::min<Eigen::Index>(*o_.gradient_sequences, in_.calib->sequences);
    std::optional<signround_pass> sr;
    if (auto f = signround_formats(); !f.empty())
      sr.emplace(*in_.runner, *in_.calib, std::move(f), signround_plan(*o_.method, *o_.signround_iters, *o_.jobs));
    const model::calibration_stats cs =
        model::calibrate_layers(*in_.runner, *in_.calib, co, [&](int layer, const model::layer_inputs& inputs) {
          std::map<const model::input_stats*, std::shared_ptr<const linear_stats>> sites;
          for (std::size_t i = 0; i < p.linears.size(); ++i) {
            const auto& l = p.linears[i];
            if (l.layer != layer) continue;
            const model::input_stats& in = *inputs.at(l.name);
            auto& site = sites[&in];
            if (!site) site = detail::quant_stats(l, in);
            // predicted mean KL = 1/2 * s * tr(dW H dW^T) / T_model, and quant's output error is tr(dW H dW^T) / count.
            t_.factor[i] = 0.5 * static_cast<double>(in.tokens) / static_cast<double>(in_.calib->tokens());
          }
          const auto stats_of = [&](const model::linear_info& l) { return sites.at(inputs.at(l.name).get()); };
          for (std::size_t ui = 0; ui < p.units.size(); ++ui)
            if (p.units[ui].layer == layer) round_unit(ui, stats_of, bar);
          // SignRound replaces this layer's roundings now, while its statistics are still resident
          if (sr) {
            const auto input_amax = [&](const model::linear_info& l) {  // packed per unit, as round_unit does
              float a = 0.0f;
              for (int m : p.units[static_cast<std::size_t>(l.unit)].members)
                a = std::max(a, stats_of(p.linears[static_cast<std::size_t>(m)])->amax);
              return a;
            };
            const auto choices = sr->run_layer(layer, p, in_.src->weights(), *t_.store, stats_of, input_amax,
                                               std::string(rounding_name(per_linear_rounding(*o_.method))));
            for (const auto& [key, ch] : choices) t_.signround[key.second][p.units[key.first].name] = to_json(ch);
          }
        });
    for (std::size_t i = 0; i < p.linears.size(); ++i) t_.factor[i] *= cs.linears.at(p.linears[i].name).sensitivity;
    bar.finish();
  }

  // Rounds every member of unit `ui` in every format it still lacks and stores the result.
  template <class StatsOf>
  void round_unit(std::size_t ui, StatsOf&& stats_of, progress& bar) {
    const auto& u = in_.profile.units[ui];
    std::vector<std::vector<float>> weights;  // loaded only when some format needs them
    float unit_amax = 0.0f, input_amax = 0.0f;
    for (std::size_t fi = 0; fi < in_.formats.size(); ++fi) {
      if (!needs_rounding(ui, fi)) continue;
      if (weights.empty())
        for (int m : u.members) {
          const auto& l = in_.profile.linears[static_cast<std::size_t>(m)];
          weights.push_back(in_.src->weights().load(l.name + ".weight").data);  // a block-FP8 one dequantized
          unit_amax = std::max(unit_amax, weight_amax(weights.back(), l.name));
          input_amax = std::max(input_amax, stats_of(l)->amax);
        }
      quant_options q = in_.quant;
      q.method = *in_.formats[fi].method;
      visit_format(in_.formats[fi].name, [&](auto fmt) {
        using F = decltype(fmt);
        gptq_factor_cache factors;  // members sharing an input site share H's factorization
        std::vector<std::vector<packed_tensor>> tensors;
        std::vector<double> errors;
        for (std::size_t k = 0; k < u.members.size(); ++k) {
          const auto& l = in_.profile.linears[static_cast<std::size_t>(u.members[k])];
          const auto stats = stats_of(l);
          const linear_input li{l.name, weights[k], l.rows, l.cols, stats.get(), unit_amax, 1.0, nullptr};
          auto res = quantize_linear<F>(li, q, &factors);
          tensors.push_back(pack(res.q, input_amax));
          errors.push_back(res.output_error);
          bar.advance();
        }
        t_.store->put(ui, in_.formats[fi].name, tensors, errors);
      });
    }
  }

  // The knapsack instance: a unit's loss in a format is the sum over its members of sensitivity x output error.
  void build_problem() {
    const auto& p = in_.profile;
    t_.problem.format_names = in_.formats.names();
    for (std::size_t ui = 0; ui < p.units.size(); ++ui) {
      const auto& u = p.units[ui];
      alloc::Unit unit{u.name, 0, {}, {}};
      for (int m : u.members) {
        unit.params += p.linears[static_cast<std::size_t>(m)].params();
        unit.members.push_back(p.linears[static_cast<std::size_t>(m)].name);
      }
      for (std::size_t fi = 0; fi < in_.formats.size(); ++fi) {
        const auto bits = in_.formats.unit_bits(p, u, fi);
        if (!bits) continue;
        double loss = 0.0;  // members kept as the source holds them add none
        if (in_.formats.rounds(p, u, fi)) {
          const auto errors = t_.store->output_errors(ui, in_.formats[fi].name);
          for (std::size_t k = 0; k < u.members.size(); ++k) {
            const auto m = static_cast<std::size_t>(u.members[k]);
            if (!in_.formats.keeps(m, fi)) loss += t_.factor[m] * errors[k];
          }
        }
        unit.options.push_back({static_cast<int>(fi), *bits, loss});
      }
      t_.problem.units.push_back(std::move(unit));
    }
  }

  const job_inputs& in_;
  const quantize_options& o_;
  std::FILE* log_;
  cost_table t_;
};

inline cost_table build_cost_table(const job_inputs& in, const quantize_options& o, std::FILE* log) {
  return cost_table_builder(in, o, log).build();
}

}  // namespace pq::pipeline
