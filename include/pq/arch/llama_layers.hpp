// pq/arch/llama_layers.hpp: the layer kinds of the Llama lineage (llama, mistral, qwen2, qwen3, qwen2_moe,
// qwen3_moe): pre-norm decoder layers of GQA attention (optional q/k/v bias, optional per-head q/k RMSNorm)
// and a SwiGLU MLP or a routed MoE (optional shared expert with a sigmoid gate). The families differ only
// in which config.json fields switch those options on, i.e. in their read_config.
#pragma once
#include <array>

#include <pq/arch/description.hpp>

namespace pq::arch::llama_lineage {

// ---- dimensions and conditions ----
inline std::int64_t hidden(const forward_config& c) { return c.hidden; }
inline std::int64_t q_width(const forward_config& c) { return c.heads * c.head_dim; }
inline std::int64_t kv_width(const forward_config& c) { return c.kv_heads * c.head_dim; }
inline std::int64_t head_dim(const forward_config& c) { return c.head_dim; }
inline std::int64_t vocab(const forward_config& c) { return c.vocab; }
inline std::int64_t one(const forward_config&) { return 1; }
inline std::int64_t intermediate(const forward_config& c) { return c.intermediate; }
inline std::int64_t experts(const forward_config& c) { return c.moe.num_experts; }
inline std::int64_t expert_intermediate(const forward_config& c) { return c.moe.expert_intermediate; }
inline std::int64_t shared_intermediate(const forward_config& c) { return c.moe.shared_expert_intermediate; }
inline bool qkv_bias(const forward_config& c) { return c.qkv_bias; }
inline bool qk_norm(const forward_config& c) { return c.qk_norm; }
inline bool untied(const forward_config& c) { return !c.tied_embeddings; }
inline bool shared_expert(const forward_config& c) { return c.moe.shared_expert_intermediate > 0; }

// ---- tensors ----
inline constexpr std::array<tensor_spec, 3> globals{{
    {.name = "model.embed_tokens", .to = slot::embed, .what = role::embedding, .rows = vocab, .cols = hidden},
    {.name = "model.norm", .to = slot::final_norm, .what = role::norm, .rows = hidden},
    // Listed in the ignore list even when tied: vLLM builds an lm_head module either way.
    {.name = "lm_head", .to = slot::lm_head, .what = role::unquantized, .rows = vocab, .cols = hidden, .when = untied},
}};

inline constexpr std::array<tensor_spec, 2> norms{{
    {.name = "input_layernorm", .to = slot::input_norm, .what = role::norm, .rows = hidden},
    {.name = "post_attention_layernorm", .to = slot::post_norm, .what = role::norm, .rows = hidden},
}};

inline constexpr std::array<tensor_spec, 6> attention{{
    {.name = "q_proj", .to = slot::q, .what = role::linear, .rows = q_width, .cols = hidden, .bias = qkv_bias, .fused = "qkv_proj"},
    {.name = "k_proj", .to = slot::k, .what = role::linear, .rows = kv_width, .cols = hidden, .bias = qkv_bias, .fused = "qkv_proj"},
    {.name = "v_proj", .to = slot::v, .what = role::linear, .rows = kv_width, .cols = hidden, .bias = qkv_bias, .fused = "qkv_proj"},
    {.name = "o_proj", .to = slot::o, .what = role::linear, .rows = hidden, .cols = q_width},
    {.name = "q_norm", .to = slot::q_norm, .what = role::norm, .rows = head_dim, .when = qk_norm},
    {.name = "k_norm", .to = slot::k_norm, .what = role::norm, .rows = head_dim, .when = qk_norm},
}};

// A SwiGLU MLP of width `inter`: gate and up read the same input and vLLM fuses them (gate_up_proj).
template <extent inter>
inline constexpr std::array<tensor_spec, 3> swiglu{{
    {.name = "gate_proj", .to = slot::gate, .what = role::linear, .rows = inter, .cols = hidden, .fused = "gate_up_proj"},
    {.name = "up_proj", .to = slot::up, .what = role::linear, .rows = inter, .cols = hidden, .fused = "gate_up_proj"},
    {.name = "down_proj", .to = slot::down, .what = role::linear, .rows = hidden, .cols = inter},
}};

inline constexpr std::array<tensor_spec, 2> moe_gates{{
    {.name = "gate", .to = slot::router, .what = role::unquantized, .rows = experts, .cols = hidden},
    {.name = "shared_expert_gate", .to = slot::shared_gate, .what = role::unquantized, .rows = one, .cols = hidden,
     .when = shared_expert},
}};

// ---- layer kinds ----
inline constexpr std::array<block_spec, 3> dense_blocks{{
    {.path = "", .of = part::layer, .tensors = norms},
    {.path = "self_attn", .of = part::attention, .tensors = attention},
    {.path = "mlp", .of = part::mlp, .tensors = swiglu<intermediate>},
}};

// vLLM runs all routed experts of a layer as one FusedMoE module with one quantization scheme, so they
// are one decision unit.
inline constexpr std::array<block_spec, 5> moe_blocks{{
    {.path = "", .of = part::layer, .tensors = norms},
    {.path = "self_attn", .of = part::attention, .tensors = attention},
    {.path = "mlp", .of = part::moe, .tensors = moe_gates},
    {.path = "mlp.experts", .of = part::experts, .tensors = swiglu<expert_intermediate>, .per_expert = true,
     .grouping = units::whole_block},
    {.path = "mlp.shared_expert", .of = part::shared_expert, .tensors = swiglu<shared_intermediate>, .when = shared_expert},
}};

inline constexpr std::array<layer_kind, 2> kinds{{
    {.name = "dense", .mix = mixer::attention, .ffn = feed_forward::mlp, .blocks = dense_blocks},
    {.name = "moe", .mix = mixer::attention, .ffn = feed_forward::moe, .blocks = moe_blocks},
}};
inline int kind_of(const forward_config& c, int layer) { return c.is_moe_layer(layer) ? 1 : 0; }

// ---- config.json fields the families share ----
inline void read_dense(const config_reader& r, forward_config& f) { f.intermediate = r.integer("intermediate_size"); }

// The MoE block's routing (qwen2_moe and qwen3_moe spell it alike; they differ in the defaults).
inline void read_moe(const config_reader& r, forward_config& f, bool renormalize_default, bool shared) {
  f.intermediate = r.integer("intermediate_size", 0);
  f.moe.num_experts = r.count("num_experts");
  f.moe.experts_per_token = r.count("num_experts_per_tok");
  f.moe.expert_intermediate = r.integer("moe_intermediate_size");
  f.moe.renormalize_top_k = r.boolean("norm_topk_prob", renormalize_default);
  f.moe.shared_expert_intermediate = shared ? r.integer("shared_expert_intermediate_size", 0) : 0;
  f.moe.sparse_step = r.count("decoder_sparse_step", 1);
  if (f.moe.sparse_step < 1) r.fail("decoder_sparse_step must be at least 1");
  const nlohmann::json& j = r.json();
  if (j.contains("mlp_only_layers") && j["mlp_only_layers"].is_array())
    for (const auto& l : j["mlp_only_layers"]) {
      if (!l.is_number_integer() || l.get<std::int64_t>() < 0 || l.get<std::int64_t>() >= f.layers)
        r.fail("\"mlp_only_layers\" must list layer indices");
      f.moe.dense_layers.push_back(l.get<int>());
    }
  if (f.moe.experts_per_token < 1 || f.moe.experts_per_token > f.moe.num_experts)
    r.fail("num_experts_per_tok must be between 1 and num_experts");
}

// A description of this lineage: the family's model types and its config reader; tensors and kinds shared.
constexpr description family(std::string_view name, std::span<const std::string_view> model_types,
                             void (*read)(const config_reader&, forward_config&)) {
  return {name, model_types, read, "model.layers", globals, kinds, kind_of};
}

}  // namespace pq::arch::llama_lineage
