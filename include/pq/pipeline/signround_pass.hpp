// pq/pipeline/signround_pass.hpp: SignRound in the cost table. Beside calibration, one full-precision stream
// and, per format f of the menu, one quantized stream of the calibration activations advance layer by layer.
// At layer i the whole layer is trained with every Linear that accepts f in f (pricing decision, docs/quant.md:
// SignRound), on the f-stream's input against the full-precision layer's output on the full-precision input.
// Each layer then keeps, per format and for all its units, the candidate roundings (the ones the cost table
// already stored, e.g. GPTQ + sweep, or SignRound's) with the lower measured block-output error, on the
// f-stream's first `compare_sequences` calibration sequences. The f-stream advances through the layer as the
// kept roundings make it.
#pragma once
#include <algorithm>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <pq/arch/profile.hpp>
#include <pq/core/parallel.hpp>
#include <pq/io/model_dir.hpp>
#include <pq/model/forward.hpp>
#include <pq/model/tokens.hpp>
#include <pq/pipeline/rounded_store.hpp>
#include <pq/pipeline/signround_block.hpp>
#include <pq/quant/cost.hpp>
#include <pq/quant/quantize_linear.hpp>

namespace pq::pipeline {

struct signround_pass_options {
  signround_options train;
  bool from_stored = false;  // start SignRound from the stored rounding (gptq+signround) instead of RTN
  bool keep_stored = false;  // the stored rounding stays a candidate (gptq+signround)
  Eigen::Index compare_sequences = 16;
  int threads = 1;
};

// What a unit shipped with in one format, and the block-output errors that decided it.
struct signround_choice {
  std::string rounding;  // "signround" or the stored rounding's name
  // block-output MSE of the unit's layer with its trained units in SignRound's roundings, and in the stored
  // ones (measured only where the stored rounding is a candidate); the layer keeps the lower, for all its units
  double block_error_stored = 0.0, block_error_signround = 0.0;
  double first_loss = 0.0, best_loss = 0.0;  // the layer's training (batch losses)
  int best_iter = 0;
};

inline signround_pass_options signround_plan(rounding r, int iters, int threads) {
  signround_pass_options o;
  o.train.iters = iters;
  o.from_stored = o.keep_stored = r == rounding::gptq_signround;
  o.threads = resolve_threads(threads, std::numeric_limits<int>::max());
  return o;
}
inline nlohmann::json to_json(const signround_choice& c) {
  return {{"rounding", c.rounding}, {"block_error_stored", c.block_error_stored},
          {"block_error_signround", c.block_error_signround}, {"train_first_loss", c.first_loss},
          {"train_best_loss", c.best_loss}, {"train_best_iter", c.best_iter}};
}

class signround_pass {
 public:
  // Trains in each of `formats`, formats that round (the caller asks the format table: a passthrough format
  // has nothing to train) and whose roundings this run made (a reused one was trained when it was made).
  signround_pass(const model::runner& r, const model::token_batch& calib, std::vector<std::string> formats,
                 signround_pass_options o)
      : r_(&r), len_(calib.length), formats_(std::move(formats)), o_(std::move(o)) {
    x_fp_ = r.embed(calib);
    for (const auto& f : formats_) x_q_[f] = x_fp_;
  }

  // Layer `layer`: trains it in every format, and for each unit of the layer and format replaces the stored
  // rounding in `store` by SignRound's where that has the lower block-output error. `stats_of(linear)` gives the
  // calibration statistics (for the stored output error tr(ΔW H ΔWᵀ)/n, the allocator's currency),
  // `stored_rounding` names what the store held, `input_amax(linear)` is packed with NVFP4.
  template <class StatsOf, class InputAmax>
  std::map<std::pair<std::size_t, std::string>, signround_choice> run_layer(
      int layer, const model::profile& profile, const model::weight_provider& source, rounded_store& store, StatsOf&& stats_of,
      InputAmax&& input_amax, const std::string& stored_rounding) {
    const model::forward_config& c = r_->config();
    const model::layer_weights fp = r_->load_layer(layer);
    const model::matrix y = block_output(c, fp, x_fp_, len_, o_.threads);
    const Eigen::Index nc = std::min<Eigen::Index>(o_.compare_sequences, x_fp_.rows() / len_) * len_;
    const model::matrix y_cmp = y.topRows(nc);
    std::vector<std::size_t> units;
    for (std::size_t ui = 0; ui < profile.units.size(); ++ui)
      if (profile.units[ui].layer == layer) units.push_back(ui);
    // source weights and unit amax of every Linear of the layer
    std::map<std::string, std::vector<float>> w;
    std::map<std::string, float> amax;
    for (std::size_t ui : units) {
      float a = 0.0f;
      for (int m : profile.units[ui].members) {
        const auto& l = profile.linears[static_cast<std::size_t>(m)];
        w[l.name] = source.load(l.name + ".weight").data;
        a = std::max(a, weight_amax(w[l.name], l.name));
      }
      for (int m : profile.units[ui].members) amax[profile.linears[static_cast<std::size_t>(m)].name] = a;
    }
    std::map<std::pair<std::size_t, std::string>, signround_choice> chosen;
    for (const auto& f : formats_) {
      std::map<std::string, std::unique_ptr<signround_linear>> states;
      std::map<std::string, signround_linear*> trained;
      std::vector<std::size_t> fitting;
      for (std::size_t ui : units) {
        const auto& u = profile.units[ui];
        if (!store.has(ui, f)) continue;  // the format does not accept this unit
        fitting.push_back(ui);
        for (int m : u.members) {
          const auto li = static_cast<std::size_t>(m);
          const auto& l = profile.linears[li];
          std::vector<packed_tensor> start;
          if (o_.from_stored) start = store.tensors(li, f);
          states[l.name] = make_signround_linear(f, w[l.name], l.rows, l.cols, amax[l.name], start);
          trained[l.name] = states[l.name].get();
        }
      }
      model::layer_weights q = fp;
      const block_training t = train_block(c, q, trained, x_q_.at(f), y, len_, o_.train, o_.threads);
      auto slots = model::linears_of(q, c);
      // The layer's block error on the f-stream's first `compare_sequences` sequences (the input this layer
      // sees when the layers before it are in f, as in training), against the full-precision output.
      const model::matrix x_cmp = x_q_.at(f).topRows(nc);
      auto error_of = [&](const model::layer_weights& lw) {
        const model::matrix out = block_output(c, lw, x_cmp, len_, o_.threads);
        return static_cast<double>((out - y_cmp).cast<double>().squaredNorm()) / static_cast<double>(out.size());
      };
      // SignRound's roundings or the stored ones, for the whole layer at once: SignRound tunes a layer's Linears
      // jointly, so their errors partly cancel; a unit judged alone (the rest in full precision) or swapped
      // alone into the trained layer is judged out of that context (both tried: docs/quant.md).
      const double error_trained = error_of(q);
      double error_stored = 0.0;
      if (o_.keep_stored) {
        model::layer_weights stored = q;
        auto s = model::linears_of(stored, c);
        for (std::size_t ui : fitting)
          for (int m : profile.units[ui].members)
            s.at(profile.linears[static_cast<std::size_t>(m)].name)->weight = store.dequantized(static_cast<std::size_t>(m), f);
        error_stored = error_of(stored);
      }
      const bool use_sr = !o_.keep_stored || error_trained < error_stored;
      for (std::size_t ui : fitting) {
        const auto& u = profile.units[ui];
        const signround_choice ch{use_sr ? "signround" : stored_rounding, error_stored, error_trained, t.first_loss,
                                  t.best_loss, t.best_iter};
        if (use_sr) {
          std::vector<std::vector<packed_tensor>> tensors;
          std::vector<double> errors;
          for (int m : u.members) {
            const auto& l = profile.linears[static_cast<std::size_t>(m)];
            tensors.push_back(states.at(l.name)->pack(input_amax(l)));
            const cost_hessian h(*stats_of(l));
            const model::matrix& wq = slots.at(l.name)->weight;
            errors.push_back(output_error(w[l.name], std::span<const float>(wq.data(), static_cast<std::size_t>(wq.size())),
                                          l.rows, l.cols, h, o_.threads));
          }
          store.put(ui, f, tensors, errors);
        } else {
          for (int m : u.members) {  // the f-stream continues through the stored rounding
            const auto& l = profile.linears[static_cast<std::size_t>(m)];
            slots.at(l.name)->weight = store.dequantized(static_cast<std::size_t>(m), f);
          }
        }
        chosen[{ui, f}] = ch;
      }
      x_q_.at(f) = block_output(c, q, x_q_.at(f), len_, o_.threads);
    }
    x_fp_ = y;
    return chosen;
  }

 private:
  const model::runner* r_;
  Eigen::Index len_;
  std::vector<std::string> formats_;
  signround_pass_options o_;
  model::matrix x_fp_;
  std::map<std::string, model::matrix> x_q_;
};

}  // namespace pq::pipeline
