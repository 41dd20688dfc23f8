// tests/model/synthetic.hpp: small random decoders (dense and MoE) held in memory, for gradient and routing tests.
#pragma once
#include <pq/arch/registry.hpp>
#include <pq/model/forward.hpp>

#include <random>

namespace pq::model::test {

inline forward_config tiny_config(bool moe, bool qk_norm) {
  forward_config c;
  // The Llama lineage's tables (one family's: they differ only in how config.json sets the flags below).
  c.architecture = &arch::qwen2_moe;
  c.hidden = 16;
  c.intermediate = 24;
  c.layers = 2;
  c.heads = 4;
  c.kv_heads = 2;
  c.head_dim = 8;
  c.vocab = 32;
  c.rms_eps = 1e-6;
  c.tied_embeddings = true;
  c.qkv_bias = !qk_norm;
  c.qk_norm = qk_norm;
  if (moe) {
    c.moe.num_experts = 4;
    c.moe.experts_per_token = 2;
    c.moe.expert_intermediate = 12;
    c.moe.renormalize_top_k = qk_norm;  // exercise both routings
    c.moe.shared_expert_intermediate = qk_norm ? 0 : 20;
    c.moe.dense_layers = {0};
  }
  return c;
}

// Every tensor the config implies, with N(0, scale) entries (norm weights around 1).
inline memory_weights random_weights(const forward_config& c, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  auto mat = [&](Eigen::Index r, Eigen::Index k, float scale) {
    matrix m(r, k);
    for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = scale * nd(rng);
    return m;
  };
  auto norm = [&](Eigen::Index n) {
    vector v(n);
    for (Eigen::Index i = 0; i < n; ++i) v(i) = 1.0f + 0.1f * nd(rng);
    return v;
  };
  memory_weights w;
  const float s = 0.3f;
  w.add("model.embed_tokens.weight", mat(c.vocab, c.hidden, 1.0f));
  w.add("model.norm.weight", norm(c.hidden));
  auto mlp = [&](const std::string& p, Eigen::Index inter) {
    w.add(p + ".gate_proj.weight", mat(inter, c.hidden, s));
    w.add(p + ".up_proj.weight", mat(inter, c.hidden, s));
    w.add(p + ".down_proj.weight", mat(c.hidden, inter, s));
  };
  for (int l = 0; l < c.layers; ++l) {
    const std::string p = layer_prefix(l);
    w.add(p + ".input_layernorm.weight", norm(c.hidden));
    w.add(p + ".post_attention_layernorm.weight", norm(c.hidden));
    const Eigen::Index qd = c.heads * c.head_dim, kvd = c.kv_heads * c.head_dim;
    for (auto [n, out] : {std::pair{"q_proj", qd}, {"k_proj", kvd}, {"v_proj", kvd}}) {
      w.add(p + ".self_attn." + n + ".weight", mat(out, c.hidden, s));
      if (c.qkv_bias) w.add(p + ".self_attn." + n + ".bias", vector(mat(out, 1, s).col(0)));
    }
    w.add(p + ".self_attn.o_proj.weight", mat(c.hidden, qd, s));
    if (c.qk_norm) {
      w.add(p + ".self_attn.q_norm.weight", norm(c.head_dim));
      w.add(p + ".self_attn.k_norm.weight", norm(c.head_dim));
    }
    if (!c.is_moe_layer(l)) {
      mlp(p + ".mlp", c.intermediate);
      continue;
    }
    w.add(p + ".mlp.gate.weight", mat(c.moe.num_experts, c.hidden, 1.0f));
    for (int e = 0; e < c.moe.num_experts; ++e) mlp(p + ".mlp.experts." + std::to_string(e), c.moe.expert_intermediate);
    if (c.moe.shared_expert_intermediate) {
      mlp(p + ".mlp.shared_expert", c.moe.shared_expert_intermediate);
      w.add(p + ".mlp.shared_expert_gate.weight", mat(1, c.hidden, s));
    }
  }
  return w;
}

inline token_batch random_tokens(const forward_config& c, Eigen::Index seqs, Eigen::Index len, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<std::int32_t> pick(0, static_cast<std::int32_t>(c.vocab - 1));
  token_batch t{seqs, len, {}};
  for (Eigen::Index i = 0; i < seqs * len; ++i) t.ids.push_back(pick(rng));
  return t;
}

}  // namespace pq::model::test
