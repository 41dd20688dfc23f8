// pq/model/calibration.hpp: per-Linear calibration statistics (input Hessian, E[x^2], amax, Fisher sensitivity).
#pragma once
#include <pq/model/forward.hpp>

#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

namespace pq::model {

// What one input site (the input shared by q/k/v, by gate/up, ...) looked like.
struct input_stats {
  matrix_d xtx;            // sum over tokens of x x^T, [K, K]: fp32 values, exact fp64 products and sums
  vector_d mean_sq;        // E[x_k^2] per input channel
  float amax = 0;          // max |x| over everything seen
  std::int64_t tokens = 0; // tokens actually seen
  double prior_tokens = 0; // pseudo-tokens of pooled statistics added to a rarely routed expert
};

struct linear_stats {
  std::shared_ptr<const input_stats> input;  // shared by the Linears fed the same input
  // Mean over tokens and output channels of (dL/dy)^2, L the summed next-token NLL of the
  // calibration tokens: the diagonal empirical Fisher of the output, averaged. The predicted
  // loss increase of a weight error dW is predicted_kl() below.
  double sensitivity = 0;
  std::int64_t gradient_tokens = 0;  // tokens behind `sensitivity` (routed ones for an expert)
  double sensitivity_prior_tokens = 0;
};

struct calibration_stats {
  std::map<std::string, linear_stats> linears;  // by HF Linear name
  std::int64_t tokens = 0;           // calibration tokens entering the model
  std::int64_t gradient_tokens = 0;  // of which went through the backward pass
};

// Which labels the backward pass uses: the data's next tokens (empirical Fisher) or tokens
// drawn from the model's own distribution (a one-sample estimate of the true Fisher, whose
// quadratic form is the KL to the unquantized model).
enum class fisher_labels { next_token, sampled };

struct calibration_options {
  Eigen::Index gradient_sequences = 32;  // sequences that also run the backward pass
  fisher_labels labels = fisher_labels::next_token;  // ranked measured KL better on both test models (docs/model.md)
  unsigned seed = 0;                     // for sampled labels
  // An expert that saw fewer tokens than this (0: its in_features) is topped up with pooled
  // statistics of its layer's experts, as if it had seen that many tokens.
  double min_expert_tokens = 0;
};

// The unweighted baseline: sum over tokens of |dW x|^2, i.e. tr(dW XtX dW^T).
inline double output_error(const input_stats& in, const matrix& dw) {
  const matrix_d d = dw.cast<double>();
  return (d * in.xtx).cwiseProduct(d).sum();
}

// Predicted mean KL increase when `stats`' Linear gets weight error dW = W_q - W [out, in]:
// 1/2 * sensitivity * tr(dW XtX dW^T) / tokens.
inline double predicted_kl(const linear_stats& s, const matrix& dw, std::int64_t model_tokens) {
  return 0.5 * s.sensitivity * output_error(*s.input, dw) / static_cast<double>(model_tokens);
}
namespace detail {

class stats_collector final : public linear_hooks {
public:
  void on_input(std::span<const std::string* const> linears, const matrix& x) override {
    const matrix_d xd = x.cast<double>();
    matrix_d local = matrix_d::Zero(x.cols(), x.cols());
    local.selfadjointView<Eigen::Lower>().rankUpdate(xd.transpose());
    const vector_d sq = xd.cwiseAbs2().colwise().sum().transpose();
    const float amax = x.cwiseAbs().maxCoeff();
    std::lock_guard lock(m_);
    site& s = sites_[*linears[0]];
    if (s.names.empty()) {
      for (const std::string* n : linears) s.names.push_back(*n);
      s.xtx = matrix_d::Zero(x.cols(), x.cols());
      s.sum_sq = vector_d::Zero(x.cols());
    }
    s.xtx += local;
    s.sum_sq += sq;
    s.amax = std::max(s.amax, amax);
    s.tokens += x.rows();
  }
  void on_output_grad(const std::string& linear, const matrix& dy) override {
    const double g2 = dy.cast<double>().squaredNorm();
    std::lock_guard lock(m_);
    grad& g = grads_[linear];
    g.sum_sq += g2;
    g.elements += dy.size();
    g.tokens += dy.rows();
  }

  struct site {
    std::vector<std::string> names;
    matrix_d xtx;
    vector_d sum_sq;
    float amax = 0;
    std::int64_t tokens = 0;
  };
  struct grad {
    double sum_sq = 0;
    std::int64_t elements = 0, tokens = 0;
  };
  std::map<std::string, site> sites_;
  std::map<std::string, grad> grads_;

private:
  std::mutex m_;
};

// d(sum of NLLs)/d(final hidden) for rows holding whole sequences; the last position has no label.
inline matrix loss_gradient(const head_weights& head, const forward_config& c, const matrix& h, const token_batch& t,
                            fisher_labels labels, unsigned seed) {
  const Eigen::Index len = t.length;
  matrix dh(h.rows(), h.cols());
  for (Eigen::Index s = 0; s < t.sequences; ++s) {
    const matrix hs = h.middleRows(s * len, len);
    const matrix xn = rmsnorm(hs, head.norm, c.rms_eps);
    matrix dl = xn * head.lm_head.transpose();
    std::mt19937 rng(seed + static_cast<unsigned>(s));
    for (Eigen::Index p = 0; p < len; ++p) {
      auto row = dl.row(p);
      if (p + 1 == len) {
        row.setZero();
        continue;
      }
      row = (row.array() - row.maxCoeff()).exp().matrix();
      row /= row.sum();
      Eigen::Index label = t.at(s, p + 1);
      if (labels == fisher_labels::sampled) {
        std::discrete_distribution<Eigen::Index> pick(row.data(), row.data() + row.size());
        label = pick(rng);
      }
      row(label) -= 1.0f;
    }
    dh.middleRows(s * len, len) = rmsnorm_backward(hs, head.norm, c.rms_eps, dl * head.lm_head);
  }
  return dh;
}

// The routed experts' input sites of an MoE layer, from its description: the Linears of one expert that
// read the same input (gate_proj/up_proj), and each Linear alone otherwise (down_proj).
struct expert_site {
  std::vector<std::vector<std::string>> linears;  // [expert][projection]: module names; the first keys the site
  Eigen::Index in_features = 0;
};
inline std::vector<expert_site> expert_sites(const forward_config& c, int layer) {
  std::vector<expert_site> sites;
  std::vector<std::string_view> keys;  // per site: its fused module (or the Linear's own name)
  arch::for_each_layer_tensor(c, layer, [&](const arch::tensor_entry& e) {
    if (e.expert < 0 || e.spec->what != arch::role::linear) return;
    const std::string_view key = e.spec->fused.empty() ? e.spec->name : e.spec->fused;
    const auto it = std::find(keys.begin(), keys.end(), key);
    const std::size_t k = static_cast<std::size_t>(it - keys.begin());
    if (it == keys.end()) {
      keys.push_back(key);
      sites.push_back({std::vector<std::vector<std::string>>(static_cast<std::size_t>(c.moe.num_experts)), e.shape[1]});
    }
    sites[k].linears[static_cast<std::size_t>(e.expert)].push_back(e.module);
  });
  return sites;
}

// Pooled per-token statistics of one site over all experts of a layer.
struct pooled_site {
  matrix_d xtx;
  vector_d sum_sq;
  float amax = 0;
  std::int64_t tokens = 0;
};
inline pooled_site pool(int layer, const expert_site& site, const std::map<std::string, std::shared_ptr<input_stats>>& inputs) {
  pooled_site p{matrix_d::Zero(site.in_features, site.in_features), vector_d::Zero(site.in_features), 0, 0};
  for (const auto& expert : site.linears) {
    const auto it = inputs.find(expert[0]);
    if (it == inputs.end()) continue;
    const input_stats& s = *it->second;
    p.xtx += s.xtx;
    p.sum_sq += s.mean_sq * static_cast<double>(s.tokens);
    p.amax = std::max(p.amax, s.amax);
    p.tokens += s.tokens;
  }
  if (p.tokens == 0) throw model_error("calibration: no token was routed to any expert of layer " + std::to_string(layer));
  return p;
}
// Mean sensitivity over all routed gradient tokens of projection `j` of the site in the layer.
inline double pooled_sensitivity(const expert_site& site, std::size_t j, const calibration_stats& out) {
  double g2 = 0, tokens = 0;
  for (const auto& expert : site.linears) {
    const linear_stats& ls = out.linears.at(expert[j]);
    g2 += ls.sensitivity * static_cast<double>(ls.gradient_tokens);
    tokens += static_cast<double>(ls.gradient_tokens);
  }
  return tokens > 0 ? g2 / tokens : 0.0;
}

// The per-expert target count of damping: `min_tokens`, or (0) the site's in_features.
inline double expert_min_tokens(double min_tokens, const expert_site& site) {
  return min_tokens > 0 ? min_tokens : static_cast<double>(site.in_features);
}

// Tops up the input statistics of every expert of MoE layer `layer` that saw fewer than
// `min_tokens` tokens (0: its in_features) with the pooled per-token statistics of all the
// layer's experts, as if it had seen that many; an expert no token reached gets the pooled
// statistics alone.
inline void damp_expert_inputs(const forward_config& c, int layer, double min_tokens,
                               std::map<std::string, std::shared_ptr<input_stats>>& inputs) {
  for (const expert_site& site : expert_sites(c, layer)) {
    const pooled_site p = pool(layer, site, inputs);
    const double need = expert_min_tokens(min_tokens, site);
    for (const auto& expert : site.linears) {
      auto& slot = inputs[expert[0]];
      if (!slot) {
        slot = std::make_shared<input_stats>(input_stats{matrix_d::Zero(site.in_features, site.in_features),
                                                         vector_d::Zero(site.in_features), 0, 0, 0});
        for (const std::string& name : expert) inputs[name] = slot;
      }
      input_stats& s = *slot;
      if (const double extra = need - static_cast<double>(s.tokens); extra > 0) {
        const double share = extra / static_cast<double>(p.tokens);
        s.xtx += p.xtx * share;
        s.mean_sq = (s.mean_sq * static_cast<double>(s.tokens) + p.sum_sq * share) / need;
        s.amax = std::max(s.amax, p.amax);
        s.prior_tokens = extra;
      }
    }
  }
}

// The same for the sensitivities: an expert with fewer than `min_tokens` gradient tokens is
// topped up with the mean sensitivity of all the layer's experts.
inline void damp_expert_sensitivities(const forward_config& c, int layer, double min_tokens, calibration_stats& out) {
  for (const expert_site& site : expert_sites(c, layer)) {
    const double need = expert_min_tokens(min_tokens, site);
    std::vector<double> pooled_sens;  // per projection, before any expert is damped
    for (std::size_t j = 0; j < site.linears.front().size(); ++j) pooled_sens.push_back(pooled_sensitivity(site, j, out));
    for (const auto& expert : site.linears)
      for (std::size_t j = 0; j < expert.size(); ++j) {
        linear_stats& ls = out.linears.at(expert[j]);
        const double extra = need - static_cast<double>(ls.gradient_tokens);
        if (extra <= 0) continue;
        ls.sensitivity = (ls.sensitivity * static_cast<double>(ls.gradient_tokens) + pooled_sens[j] * extra) / need;
        ls.sensitivity_prior_tokens = extra;
      }
  }
}

}  // namespace detail

// The input statistics of one layer's Linears, by Linear name (Linears fed the same input share
// one object), as calibrate_layers hands them over.
using layer_inputs = std::map<std::string, std::shared_ptr<input_stats>>;

// Runs the source model on the calibration tokens layer by layer, one layer resident at a time:
// all sequences feed the input statistics; the first `gradient_sequences` also run the backward
// pass (their layer inputs are kept: layers x tokens x hidden fp32) for the sensitivities.
// As soon as layer i has seen every sequence, `on_layer(i, inputs)` receives that layer's
// finished input statistics (MoE experts already damped) and they are dropped afterwards, so at
// most one layer's statistics are resident. Returns the sensitivities; `input` is left empty.
template <class OnLayer>
calibration_stats calibrate_layers(const runner& model, const token_batch& calib, const calibration_options& opt,
                                   OnLayer&& on_layer) {
  const forward_config& c = model.config();
  const Eigen::Index len = calib.length;
  const token_batch grad_batch = calib.first(opt.gradient_sequences);
  const Eigen::Index grad_rows = grad_batch.tokens();
  detail::stats_collector hooks;

  matrix h = model.embed(calib);
  std::vector<matrix> kept;
  for (int i = 0; i < c.layers; ++i) {
    kept.push_back(h.topRows(grad_rows));
    model.run_layer(model.load_layer(i), h, len, &hooks);
    layer_inputs inputs;
    for (auto& [key, s] : hooks.sites_) {
      auto in = std::make_shared<input_stats>();
      in->xtx = s.xtx.template selfadjointView<Eigen::Lower>();
      in->mean_sq = s.sum_sq / static_cast<double>(s.tokens);
      in->amax = s.amax;
      in->tokens = s.tokens;
      for (const auto& n : s.names) inputs[n] = in;
    }
    hooks.sites_.clear();
    if (c.is_moe_layer(i)) detail::damp_expert_inputs(c, i, opt.min_expert_tokens, inputs);
    for (const std::string& name : linear_names(c, i))
      if (!inputs.contains(name)) throw model_error("calibration: Linear '" + name + "' received no input");
    on_layer(i, static_cast<const layer_inputs&>(inputs));
  }
  matrix dh = detail::loss_gradient(model.load_head(), c, h.topRows(grad_rows), grad_batch, opt.labels, opt.seed);
  h.resize(0, 0);
  for (int i = c.layers - 1; i >= 0; --i) {
    dh = model.backward_layer(model.load_layer(i), kept[static_cast<std::size_t>(i)], dh, len, &hooks);
    kept[static_cast<std::size_t>(i)].resize(0, 0);
  }

  calibration_stats out;
  out.tokens = calib.tokens();
  out.gradient_tokens = grad_rows;
  for (int i = 0; i < c.layers; ++i)
    for (const std::string& name : linear_names(c, i)) {
      linear_stats ls;
      const auto g = hooks.grads_.find(name);
      if (g != hooks.grads_.end()) {
        ls.sensitivity = g->second.sum_sq / static_cast<double>(g->second.elements);
        ls.gradient_tokens = g->second.tokens;
      }
      out.linears[name] = ls;
    }
  for (int i = 0; i < c.layers; ++i)
    if (c.is_moe_layer(i)) detail::damp_expert_sensitivities(c, i, opt.min_expert_tokens, out);
  return out;
}

// calibrate_layers keeping every layer's statistics: the whole model's, in memory.
inline calibration_stats calibrate(const runner& model, const token_batch& calib, const calibration_options& opt = {}) {
  layer_inputs all;
  calibration_stats out = calibrate_layers(model, calib, opt, [&](int, const layer_inputs& inputs) {
    all.insert(inputs.begin(), inputs.end());
  });
  for (auto& [name, ls] : out.linears) ls.input = all.at(name);
  return out;
}

}  // namespace pq::model
