// pq/model/forward.hpp: the reference CPU forward (and backward) of Llama/Qwen decoders, one layer resident at a time.
#pragma once
#include <pq/model/detail/layer.hpp>
#include <pq/model/detail/parallel.hpp>
#include <pq/model/forward_config.hpp>
#include <pq/model/hooks.hpp>
#include <pq/model/layer_weights.hpp>
#include <pq/model/tokens.hpp>
#include <pq/model/weights.hpp>

#include <algorithm>
#include <thread>

namespace pq::model {

struct run_options {
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  Eigen::Index chunk_tokens = 2048;  // rows per work item (whole sequences); bounds activation memory
};

// The model-wide matrix the description keeps in slot `s` (the embedding table, lm_head), shape-checked.
inline matrix load_global(const weight_provider& w, const forward_config& c, arch::slot s) {
  const arch::tensor_entry e = arch::global_tensor(c, s);
  return load_matrix(w, e.weight(), e.shape[0], e.shape[1]);
}

// The final RMSNorm and the output projection (embed_tokens when tied).
struct head_weights {
  vector norm;
  matrix lm_head;  // [vocab, hidden]
};

// Runs a checkpoint given by a weight_provider. Hidden states of the whole batch are kept
// ([tokens, hidden] fp32); layer weights are loaded by the caller one layer at a time, used
// and dropped, so at most one layer is resident.
class runner {
public:
  runner(const weight_provider& weights, forward_config config, run_options options = {})
      : w_(&weights), c_(std::move(config)), o_(options) {}

  const forward_config& config() const { return c_; }
  const run_options& options() const { return o_; }
  const weight_provider& weights() const { return *w_; }

  // [tokens, hidden] embeddings of the batch, sequence after sequence.
  matrix embed(const token_batch& t) const {
    check_vocab(t);
    const matrix table = load_global(*w_, c_, arch::slot::embed);
    matrix h(t.tokens(), c_.hidden);
    for (Eigen::Index i = 0; i < t.tokens(); ++i) h.row(i) = table.row(t.ids[static_cast<std::size_t>(i)]);
    return h;
  }

  layer_weights load_layer(int i) const { return pq::model::load_layer(*w_, c_, i); }

  head_weights load_head() const {
    const auto norm = arch::global_tensor(c_, arch::slot::final_norm);
    vector g = load_vector(*w_, norm.weight(), norm.shape[0]);
    if (c_.norm_plus_one) g.array() += 1.0f;
    return {std::move(g), load_global(*w_, c_, c_.tied_embeddings ? arch::slot::embed : arch::slot::lm_head)};
  }

  // h: [sequences * len, hidden], updated in place to the layer's output.
  void run_layer(const layer_weights& lw, matrix& h, Eigen::Index len, linear_hooks* hooks = nullptr) const {
    const detail::rope_table rope = detail::make_rope(len, c_.rotary(), c_.rope_theta, c_.rope_frequencies);
    detail::for_each_chunk(h.rows(), len, o_.chunk_tokens, o_.threads, [&](Eigen::Index r0, Eigen::Index n) {
      matrix part = h.middleRows(r0, n);
      detail::layer_forward(lw, c_, rope, part, hooks);
      h.middleRows(r0, n) = part;
    });
  }

  // Given the layer input h and dy = d/d(layer output), returns d/d(layer input); reports
  // every Linear's output gradient to hooks.
  matrix backward_layer(const layer_weights& lw, const matrix& h, const matrix& dy, Eigen::Index len,
                        linear_hooks* hooks) const {
    const detail::rope_table rope = detail::make_rope(len, c_.rotary(), c_.rope_theta, c_.rope_frequencies);
    matrix dh(h.rows(), h.cols());
    detail::for_each_chunk(h.rows(), len, o_.chunk_tokens, o_.threads, [&](Eigen::Index r0, Eigen::Index n) {
      dh.middleRows(r0, n) = detail::layer_backward(lw, c_, rope, h.middleRows(r0, n), dy.middleRows(r0, n), hooks);
    });
    return dh;
  }

  // Runs layers [first, layers) on h in place, loading each from the provider.
  void run_layers(matrix& h, Eigen::Index len, int first = 0, linear_hooks* hooks = nullptr) const {
    for (int i = first; i < c_.layers; ++i) run_layer(load_layer(i), h, len, hooks);
  }

  // Logits [rows, vocab] of final hidden states (before the final norm).
  static matrix logits(const head_weights& head, const Eigen::Ref<const matrix>& h, double eps) {
    return detail::rmsnorm(h, head.norm, eps) * head.lm_head.transpose();
  }

  // Full forward of a batch: logits [tokens, vocab]. Meant for small batches (the logits of a
  // large batch are large); evaluation works on hidden states instead.
  matrix logits(const token_batch& t) const {
    matrix h = embed(t);
    run_layers(h, t.length);
    return logits(load_head(), h, c_.rms_eps);
  }

private:
  void check_vocab(const token_batch& t) const {
    for (std::int32_t id : t.ids)
      if (id < 0 || id >= c_.vocab)
        throw model_error("token id " + std::to_string(id) + " is outside the vocabulary [0, " +
                          std::to_string(c_.vocab) + ") of the model");
  }

  const weight_provider* w_;
  forward_config c_;
  run_options o_;
};

}  // namespace pq::model
