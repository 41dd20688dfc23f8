// pq/model/decoder.hpp: incremental decoding with a KV cache, for generation (data-free calibration).
// A batch of sequences advances one position per step in lockstep; each layer runs the same math as
// the reference forward (detail/layer.hpp: attention_block and feed_forward_block), only the attention
// reads the cached keys and values of the earlier positions instead of recomputing them, and a gated DeltaNet
// layer continues each sequence's recurrent state (detail/deltanet.hpp: the same step function as the forward).
#pragma once
#include <pq/model/detail/layer.hpp>
#include <pq/model/detail/parallel.hpp>
#include <pq/model/forward.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace pq::model {

struct decoder_options {
  // Layer weights (fp32) stay loaded while their total fits in this many bytes; the layers beyond
  // are loaded for every step and dropped (one of them resident at a time), which bounds memory for
  // any model size at the cost of re-reading those weights each step.
  std::size_t resident_bytes = std::size_t{2} << 30;
};

namespace detail {
inline std::size_t linear_bytes(const linear& l) { return sizeof(float) * static_cast<std::size_t>(l.weight.size() + l.bias.size()); }
inline std::size_t mlp_bytes(const mlp_weights& m) { return linear_bytes(m.gate) + linear_bytes(m.up) + linear_bytes(m.down); }
// fp32 bytes a loaded layer holds.
inline std::size_t layer_bytes(const layer_weights& w) {
  std::size_t b = sizeof(float) * static_cast<std::size_t>(w.input_norm.size() + w.post_norm.size() +
                                                           w.attn.q_norm.size() + w.attn.k_norm.size());
  for (const linear* l : {&w.attn.q, &w.attn.k, &w.attn.v, &w.attn.o}) b += linear_bytes(*l);
  for (const linear* l : {&w.delta.qkv, &w.delta.z, &w.delta.b, &w.delta.a, &w.delta.out}) b += linear_bytes(*l);
  b += sizeof(float) * static_cast<std::size_t>(w.delta.conv.size() + w.delta.a_log.size() + w.delta.dt_bias.size() +
                                                w.delta.norm.size());
  if (const auto* d = std::get_if<mlp_weights>(&w.mlp)) return b + mlp_bytes(*d);
  const auto& m = std::get<moe_weights>(w.mlp);
  b += sizeof(float) * static_cast<std::size_t>(m.router.size() + m.shared_gate.size());
  for (const auto& e : m.experts) b += mlp_bytes(e);
  if (m.shared) b += mlp_bytes(*m.shared);
  return b;
}
}  // namespace detail

// Feeds a batch of `batch` sequences one token each per step, up to `max_len` positions, and returns
// the logits that predict each sequence's next token. The logits at position p equal row p of
// runner::logits on the same prefix (up to fp32 summation order).
class decoder {
public:
  decoder(const runner& model, Eigen::Index batch, Eigen::Index max_len, decoder_options options = {})
      : m_(&model), batch_(batch), max_len_(max_len) {
    const forward_config& c = model.config();
    if (batch < 1 || max_len < 1) throw model_error("decoder: batch and max_len must be at least 1");
    rope_ = detail::make_rope(max_len, c.rotary(), c.rope_theta, c.rope_frequencies);
    head_ = model.load_head();
    if (!c.tied_embeddings) embed_ = load_global(model.weights(), c, arch::slot::embed);
    const Eigen::Index kv = c.kv_heads * c.head_dim;
    k_.resize(static_cast<std::size_t>(c.layers));
    v_.resize(static_cast<std::size_t>(c.layers));
    state_.resize(static_cast<std::size_t>(c.layers));
    for (int i = 0; i < c.layers; ++i)
      if (arch::kind_of_layer(c, i).mix == arch::mixer::deltanet) {
        state_[static_cast<std::size_t>(i)].assign(static_cast<std::size_t>(batch), detail::deltanet_initial_state(c));
      } else {
        k_[static_cast<std::size_t>(i)] = matrix(batch * max_len, kv);
        v_[static_cast<std::size_t>(i)] = matrix(batch * max_len, kv);
      }
    resident_.resize(static_cast<std::size_t>(c.layers));
    std::size_t used = 0;
    for (int i = 0; i < c.layers; ++i) {  // the first layers that fit stay loaded; the rest stream
      layer_weights w = model.load_layer(i);
      used += detail::layer_bytes(w);
      if (used > options.resident_bytes) break;
      resident_[static_cast<std::size_t>(i)] = std::move(w);
    }
  }

  Eigen::Index batch() const { return batch_; }
  Eigen::Index max_len() const { return max_len_; }
  Eigen::Index position() const { return pos_; }  // tokens fed to each sequence so far
  int resident_layers() const {
    return static_cast<int>(std::count_if(resident_.begin(), resident_.end(), [](const auto& w) { return w.has_value(); }));
  }

  // Forgets the cached positions: the next step is position 0 again.
  void reset() {
    pos_ = 0;
    for (auto& layer : state_)
      for (auto& s : layer) s = detail::deltanet_initial_state(m_->config());
  }

  // Appends ids[b] to sequence b; returns logits [batch, vocab] for the next token of each.
  matrix step(std::span<const std::int32_t> ids) {
    const forward_config& c = m_->config();
    if (static_cast<Eigen::Index>(ids.size()) != batch_)
      throw model_error("decoder: step needs " + std::to_string(batch_) + " ids, got " + std::to_string(ids.size()));
    if (pos_ >= max_len_) throw model_error("decoder: all " + std::to_string(max_len_) + " positions are used");
    const matrix& table = c.tied_embeddings ? head_.lm_head : embed_;
    matrix h(batch_, c.hidden);
    for (Eigen::Index b = 0; b < batch_; ++b) {
      const std::int32_t id = ids[static_cast<std::size_t>(b)];
      if (id < 0 || id >= c.vocab)
        throw model_error("token id " + std::to_string(id) + " is outside the vocabulary [0, " + std::to_string(c.vocab) +
                          ") of the model");
      h.row(b) = table.row(id);
    }
    const detail::rope_table rope{rope_.cos.middleRows(pos_, 1), rope_.sin.middleRows(pos_, 1)};
    const int threads = m_->options().threads;
    const Eigen::Index per_thread = (batch_ + threads - 1) / std::max(1, threads);
    for (int i = 0; i < c.layers; ++i) {
      std::optional<layer_weights> streamed;
      const layer_weights* w = resident_[static_cast<std::size_t>(i)] ? &*resident_[static_cast<std::size_t>(i)]
                                                                      : &streamed.emplace(m_->load_layer(i));
      detail::for_each_chunk(batch_, 1, per_thread, threads, [&](Eigen::Index r0, Eigen::Index n) {
        matrix part = h.middleRows(r0, n);
        if (w->mix == arch::mixer::deltanet)
          deltanet_step(*w, i, r0, part);
        else
          detail::attention_block(*w, c, rope, part, nullptr,
                                  [&](const detail::attention_tape& t) { return attend(i, r0, t); });
        detail::feed_forward_block(*w, c, part, nullptr);
        h.middleRows(r0, n) = part;
      });
    }
    ++pos_;
    return runner::logits(head_, h, c.rms_eps);
  }

private:
  // The DeltaNet half of layer i for sequences r0.. (one token each, rows of h): continues their states.
  void deltanet_step(const layer_weights& w, int layer, Eigen::Index r0, matrix& h) {
    const forward_config& c = m_->config();
    const matrix xn = detail::rmsnorm(h, w.input_norm, c.rms_eps);
    const detail::deltanet_projections p = detail::deltanet_project(w.delta, c, xn, nullptr);
    matrix o(h.rows(), c.deltanet.value_heads * c.deltanet.value_dim);
    for (Eigen::Index r = 0; r < h.rows(); ++r)
      o.row(r) = detail::deltanet_tokens(w.delta, c, p, r, 1, state_[static_cast<std::size_t>(layer)][static_cast<std::size_t>(r0 + r)]);
    h.noalias() += detail::apply_linear(w.delta.out, o);
  }

  // Stores the step's roped keys and values of sequences r0.. in layer i's cache and attends over
  // positions 0..pos_ of each: softmax(q k^T / sqrt(d)) v, computed as detail::attention_probs does.
  matrix attend(int layer, Eigen::Index r0, const detail::attention_tape& t) {
    const Eigen::Index hd = m_->config().head_dim, heads = t.q.cols() / hd, group = heads / (t.k.cols() / hd);
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
    matrix& K = k_[static_cast<std::size_t>(layer)];
    matrix& V = v_[static_cast<std::size_t>(layer)];
    matrix out(t.q.rows(), t.q.cols());
    row_vector s;
    for (Eigen::Index r = 0; r < t.q.rows(); ++r) {
      const Eigen::Index base = (r0 + r) * max_len_;
      K.row(base + pos_) = t.k.row(r);
      V.row(base + pos_) = t.v.row(r);
      for (Eigen::Index h = 0; h < heads; ++h) {
        const Eigen::Index kh = h / group;
        const auto keys = K.block(base, kh * hd, pos_ + 1, hd);
        s.noalias() = t.q.block(r, h * hd, 1, hd) * keys.transpose();
        const float m = s.maxCoeff() * scale;
        s = (s.array() * scale - m).exp().matrix();
        s /= s.sum();
        out.block(r, h * hd, 1, hd).noalias() = s * V.block(base, kh * hd, pos_ + 1, hd);
      }
    }
    return out;
  }

  const runner* m_;
  Eigen::Index batch_, max_len_, pos_ = 0;
  detail::rope_table rope_;
  head_weights head_;
  matrix embed_;                      // [vocab, hidden]; empty when tied (head_.lm_head is the table)
  std::vector<matrix> k_, v_;         // per attention layer [batch * max_len, kv_heads * head_dim], sequence-major
  std::vector<std::vector<detail::deltanet_state>> state_;  // per DeltaNet layer, per sequence
  std::vector<std::optional<layer_weights>> resident_;
};

}  // namespace pq::model
