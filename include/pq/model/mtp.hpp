// pq/model/mtp.hpp: the multi-token-prediction head (arch::mtp_spec; Qwen3.5's mtp.*) on the main model's final hidden
// states, as vLLM runs it as its speculative-decoding draft (vllm/model_executor/models/qwen3_5_mtp.py and the EAGLE
// proposer): row t of a sequence takes h_t, the main model's output AFTER its final norm, and token t+1's embedding
// (the main model's table); x_t = fc(concat[embed_norm(embed(token_{t+1})), hidden_norm(h_t)]) (embedding first);
// MTP layer 0 runs over the rows causally at positions t (its own attention over the rows 0..t, as vLLM's draft KV
// cache); mtp.norm and the main lm_head give the logits of token t+2. The reference: tests/models/mtp_reference.py.
// Only the first draft step (MTP layer 0 on the main model's states) is here; vLLM's later steps feed each step's
// normed output and drafted token back in (layer step % mtp_layers).
#pragma once
#include <pq/model/detail/ops.hpp>
#include <pq/model/forward.hpp>

#include <string>

namespace pq::model {

// The MTP head's own weights; its layers load as layers config.layers + m (load_layer), one at a time.
struct mtp_head {
  vector embed_norm, hidden_norm;  // gains (1 + w for norm_plus_one), [hidden]
  linear fc;                       // [hidden, 2 hidden]
  vector norm;                     // mtp.norm, [hidden]
};

// Loads the head's own tensors, shape-checked; throws model_error naming the tensor when one is missing, or
// config_error when the model has no MTP head.
inline mtp_head load_mtp_head(const weight_provider& w, const forward_config& c) {
  const auto gain = [&](arch::slot s) {
    const arch::tensor_entry e = arch::mtp_tensor(c, s);
    vector g = load_vector(w, e.weight(), e.shape[0]);
    if (c.norm_plus_one) g.array() += 1.0f;
    return g;
  };
  mtp_head h{gain(arch::slot::mtp_embed_norm), gain(arch::slot::mtp_hidden_norm), {}, gain(arch::slot::mtp_norm)};
  const arch::tensor_entry fc = arch::mtp_tensor(c, arch::slot::mtp_fc);
  h.fc.name = fc.module;
  h.fc.weight = load_matrix(w, fc.weight(), fc.shape[0], fc.shape[1]);
  return h;
}

// The layer index of MTP layer m (what load_layer, linears_of and the hooks' names take).
inline int mtp_layer_index(const forward_config& c, int m) { return c.layers + m; }

// The first MTP step on batch t: h holds the main model's final hidden states of t ([sequences * len, hidden], as
// runner::run_layers leaves them: before the final norm; `main` is runner::load_head(), whose norm is applied here).
// Returns the MTP layer's output [sequences * (len - 1), hidden] (before mtp.norm): row t of each sequence from h_t
// and token t+1; the last row's target (token len) lies beyond the batch. Reports fc and the layer's Linears to hooks.
inline matrix mtp_hidden(const runner& r, const head_weights& main, const mtp_head& head, const token_batch& t,
                         const matrix& h, linear_hooks* hooks = nullptr) {
  const forward_config& c = r.config();
  if (t.length < 2) throw model_error("the MTP head needs sequences of at least 2 tokens");
  if (h.rows() != t.tokens() || h.cols() != c.hidden) throw model_error("mtp_hidden: hidden states do not match the batch");
  const Eigen::Index n = t.length - 1;
  token_batch next{t.sequences, n, {}};
  next.ids.reserve(static_cast<std::size_t>(t.sequences * n));
  for (Eigen::Index s = 0; s < t.sequences; ++s)
    for (Eigen::Index p = 1; p < t.length; ++p) next.ids.push_back(t.at(s, p));
  matrix cat(next.tokens(), 2 * c.hidden);
  cat.leftCols(c.hidden) = detail::rmsnorm(r.embed(next), head.embed_norm, c.rms_eps);
  matrix hn(next.tokens(), c.hidden);
  for (Eigen::Index s = 0; s < t.sequences; ++s) hn.middleRows(s * n, n) = h.middleRows(s * t.length, n);
  detail::rmsnorm_inplace(hn, main.norm, c.rms_eps);  // the main model's output
  cat.rightCols(c.hidden) = detail::rmsnorm(hn, head.hidden_norm, c.rms_eps);
  detail::report_input(hooks, {&head.fc}, cat);
  matrix x = detail::apply_linear(head.fc, cat);
  r.run_layer(r.load_layer(mtp_layer_index(c, 0)), x, n, hooks);
  return x;
}

// Logits [rows, vocab] of MTP layer outputs y: mtp.norm, then the main model's lm_head.
inline matrix mtp_logits(const head_weights& main, const mtp_head& head, const Eigen::Ref<const matrix>& y, double eps) {
  return detail::rmsnorm(y, head.norm, eps) * main.lm_head.transpose();
}

// Logits of the first MTP step on a small batch: [sequences * (len - 1), vocab], row t of each sequence predicting
// token t+2 (runs the main model first).
inline matrix mtp_logits(const runner& r, const token_batch& t) {
  matrix h = r.embed(t);
  r.run_layers(h, t.length);
  const head_weights main = r.load_head();
  const mtp_head head = load_mtp_head(r.weights(), r.config());
  return mtp_logits(main, head, mtp_hidden(r, main, head, t, h), r.config().rms_eps);
}

}  // namespace pq::model
