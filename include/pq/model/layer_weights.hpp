// pq/model/layer_weights.hpp: one decoder layer's fp32 weights, loaded by Hugging Face name and checked against the config.
#pragma once
#include <pq/model/forward_config.hpp>
#include <pq/model/tensor.hpp>
#include <pq/model/weights.hpp>

#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace pq::model {

struct linear {
  std::string name;  // HF module name, e.g. model.layers.3.self_attn.q_proj
  matrix weight;     // [out, in]
  vector bias;       // empty when the Linear has none
  Eigen::Index in() const { return weight.cols(); }
  Eigen::Index out() const { return weight.rows(); }
};

struct attention_weights {
  linear q, k, v, o;
  vector q_norm, k_norm;  // qwen3 only, [head_dim]
};

struct mlp_weights {
  linear gate, up, down;
};

struct moe_weights {
  matrix router;  // [experts, hidden]; mlp.gate, kept in full precision
  std::vector<mlp_weights> experts;
  std::optional<mlp_weights> shared;
  row_vector shared_gate;  // [hidden], the sigmoid gate of the shared expert
};

struct layer_weights {
  int index = 0;
  vector input_norm, post_norm;
  attention_weights attn;
  std::variant<mlp_weights, moe_weights> mlp;
};

inline std::string layer_prefix(int layer) { return "model.layers." + std::to_string(layer); }

namespace detail {
inline linear load_linear(const weight_provider& p, std::string name, std::int64_t out, std::int64_t in,
                          bool bias) {
  linear l{std::move(name), {}, {}};
  l.weight = load_matrix(p, l.name + ".weight", out, in);
  if (bias) l.bias = load_vector(p, l.name + ".bias", out);
  return l;
}
inline mlp_weights load_mlp(const weight_provider& p, const std::string& prefix, std::int64_t hidden,
                            std::int64_t inter) {
  return {load_linear(p, prefix + ".gate_proj", inter, hidden, false),
          load_linear(p, prefix + ".up_proj", inter, hidden, false),
          load_linear(p, prefix + ".down_proj", hidden, inter, false)};
}
}  // namespace detail

// Loads layer `i`; throws model_error naming the tensor when one is missing or misshapen.
inline layer_weights load_layer(const weight_provider& p, const forward_config& c, int i) {
  const std::string pre = layer_prefix(i);
  const std::int64_t h = c.hidden, qd = c.heads * c.head_dim, kvd = c.kv_heads * c.head_dim;
  layer_weights w;
  w.index = i;
  w.input_norm = load_vector(p, pre + ".input_layernorm.weight", h);
  w.post_norm = load_vector(p, pre + ".post_attention_layernorm.weight", h);
  const std::string at = pre + ".self_attn";
  w.attn.q = detail::load_linear(p, at + ".q_proj", qd, h, c.qkv_bias);
  w.attn.k = detail::load_linear(p, at + ".k_proj", kvd, h, c.qkv_bias);
  w.attn.v = detail::load_linear(p, at + ".v_proj", kvd, h, c.qkv_bias);
  w.attn.o = detail::load_linear(p, at + ".o_proj", h, qd, false);
  if (c.qk_norm) {
    w.attn.q_norm = load_vector(p, at + ".q_norm.weight", c.head_dim);
    w.attn.k_norm = load_vector(p, at + ".k_norm.weight", c.head_dim);
  }
  const std::string mp = pre + ".mlp";
  if (!c.is_moe_layer(i)) {
    w.mlp = detail::load_mlp(p, mp, h, c.intermediate);
    return w;
  }
  moe_weights m;
  m.router = load_matrix(p, mp + ".gate.weight", c.moe.num_experts, h);
  for (int e = 0; e < c.moe.num_experts; ++e)
    m.experts.push_back(detail::load_mlp(p, mp + ".experts." + std::to_string(e), h, c.moe.expert_intermediate));
  if (c.moe.shared_expert_intermediate > 0) {
    m.shared = detail::load_mlp(p, mp + ".shared_expert", h, c.moe.shared_expert_intermediate);
    m.shared_gate = load_matrix(p, mp + ".shared_expert_gate.weight", 1, h).row(0);
  }
  w.mlp = std::move(m);
  return w;
}

// Every quantizable Linear of layer `i`, in forward order (the router and the shared-expert
// gate are not among them: they stay in full precision).
inline std::vector<std::string> linear_names(const forward_config& c, int i) {
  const std::string pre = layer_prefix(i);
  std::vector<std::string> out;
  for (const char* n : {"q_proj", "k_proj", "v_proj", "o_proj"}) out.push_back(pre + ".self_attn." + n);
  auto mlp = [&](const std::string& p) {
    for (const char* n : {"gate_proj", "up_proj", "down_proj"}) out.push_back(p + "." + n);
  };
  if (!c.is_moe_layer(i)) {
    mlp(pre + ".mlp");
    return out;
  }
  for (int e = 0; e < c.moe.num_experts; ++e) mlp(pre + ".mlp.experts." + std::to_string(e));
  if (c.moe.shared_expert_intermediate > 0) mlp(pre + ".mlp.shared_expert");
  return out;
}

}  // namespace pq::model
