// pq/model/evaluation.hpp: KL(p_ref || p_quant) and NLL of candidate weights on eval tokens, replaying from the first changed layer.
#pragma once
#include <pq/arch/registry.hpp>
#include <pq/model/forward.hpp>

#include <charconv>
#include <limits>
#include <string>
#include <vector>

namespace pq::model {

struct eval_result {
  double kl = 0;                // mean over every position of KL(p_ref || p), nats
  double nll = 0;               // mean next-token NLL over positions 0..len-2, nats
  std::int64_t kl_positions = 0;
  std::int64_t nll_positions = 0;
};

// The decoder layer a Linear or tensor name belongs to ("model.layers.3.mlp..." -> 3), or -1.
using arch::layer_of;

namespace detail {
struct position_losses {
  double kl = 0, nll = 0;
};
// KL(p_ref || p) summed over the rows of one sequence and the NLL of its next tokens.
inline position_losses sequence_losses(const matrix& ref_logits, const matrix& logits, const token_batch& t,
                                       Eigen::Index seq) {
  position_losses out;
  for (Eigen::Index p = 0; p < logits.rows(); ++p) {
    const auto r = ref_logits.row(p), q = logits.row(p);
    const float rm = r.maxCoeff(), qm = q.maxCoeff();
    const Eigen::Array<float, 1, Eigen::Dynamic> re = (r.array() - rm).exp();
    const float rsum = re.sum();
    const double rlse = rm + std::log(static_cast<double>(rsum));
    const double qlse = qm + std::log(static_cast<double>((q.array() - qm).exp().sum()));
    // sum_v p_v (log p_v - log q_v) = sum_v p_v (r_v - q_v) - rlse + qlse
    const double cross = static_cast<double>((re * (r.array() - q.array())).sum()) / rsum;
    out.kl += std::max(0.0, cross - rlse + qlse);
    if (p + 1 < logits.rows()) out.nll += qlse - q(t.at(seq, p + 1));
  }
  return out;
}
}  // namespace detail

// Runs the source model once on the eval tokens and keeps the hidden state entering every
// layer (and leaving the last): (layers + 1) x tokens x hidden fp32. A candidate is then
// replayed only from its first changed layer, and its logits are compared with the
// reference logits recomputed from the cached final hidden states (the full [tokens, vocab]
// reference logits would not fit for real vocabularies).
class reference_cache {
public:
  reference_cache(const runner& source, token_batch eval) : source_(&source), tokens_(std::move(eval)) {
    matrix h = source.embed(tokens_);
    for (int i = 0; i < source.config().layers; ++i) {
      hidden_.push_back(h);
      source.run_layer(source.load_layer(i), h, tokens_.length);
    }
    hidden_.push_back(std::move(h));
    head_ = source.load_head();
    reference_ = compare(hidden_.back());
  }

  const token_batch& tokens() const { return tokens_; }
  // NLL of the source model itself (its KL is 0).
  const eval_result& reference() const { return reference_; }

  // Evaluates weights that equal the source before layer `first_changed` (e.g. a
  // substituted_weights over the source), running layers [first_changed, layers).
  eval_result evaluate(const weight_provider& candidate, int first_changed) const {
    const forward_config& c = source_->config();
    if (first_changed >= c.layers) return compare(hidden_.back());
    first_changed = std::max(first_changed, 0);
    const runner run(candidate, c, source_->options());
    matrix h = hidden_[static_cast<std::size_t>(first_changed)];
    run.run_layers(h, tokens_.length, first_changed);
    return compare(h);
  }

  // Evaluates the source with some Linears replaced, from the first layer they touch.
  eval_result evaluate(const substituted_weights& candidate) const {
    int first = source_->config().layers;
    for (const auto& [name, w] : candidate.substitutions()) {
      const int l = layer_of(name);
      first = std::min(first, l < 0 ? 0 : l);
    }
    return evaluate(candidate, first);
  }

private:
  eval_result compare(const matrix& final_hidden) const {
    const Eigen::Index len = tokens_.length;
    const double eps = source_->config().rms_eps;
    const bool is_reference = &final_hidden == &hidden_.back();  // the source itself: one lm_head product
    // per sequence, summed in sequence order: the same measurement whatever order the threads finish in
    std::vector<detail::position_losses> per(static_cast<std::size_t>(final_hidden.rows() / len));
    detail::for_each_chunk(final_hidden.rows(), len, len, source_->options().threads,
                           [&](Eigen::Index r0, Eigen::Index) {
                             const matrix ref = runner::logits(head_, hidden_.back().middleRows(r0, len), eps);
                             per[static_cast<std::size_t>(r0 / len)] = detail::sequence_losses(
                                 ref, is_reference ? ref : runner::logits(head_, final_hidden.middleRows(r0, len), eps),
                                 tokens_, r0 / len);
                           });
    eval_result r;
    for (const auto& l : per) {
      r.kl += l.kl;
      r.nll += l.nll;
    }
    r.kl_positions = tokens_.tokens();
    r.nll_positions = tokens_.sequences * (len - 1);
    r.kl /= static_cast<double>(r.kl_positions);
    r.nll /= static_cast<double>(r.nll_positions);
    return r;
  }

  const runner* source_;
  token_batch tokens_;
  std::vector<matrix> hidden_;
  head_weights head_;
  eval_result reference_;
};

}  // namespace pq::model
