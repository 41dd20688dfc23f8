// pq/arch/qwen3_hybrid_layers.hpp: the layer kinds of the hybrid Qwen3-Next lineage (qwen3_next, qwen3_5_moe):
// pre-norm decoder layers whose mixer is either a gated DeltaNet (linear attention) or gated softmax attention
// (q_proj also carries a per-head output gate; q/k RMSNorm; partial rotary), followed by a routed MoE with a
// sigmoid-gated shared expert (or a SwiGLU MLP on mlp_only_layers). RMSNorm gains are offsets from 1 except the
// DeltaNet's gated norm. layer_types in config.json says which mixer each layer has.
#pragma once
#include <array>

#include <pq/arch/llama_layers.hpp>

namespace pq::arch::qwen3_hybrid {

using namespace llama_lineage;  // dimensions, norms, swiglu, moe_gates

// ---- dimensions ----
inline std::int64_t gated_q_width(const forward_config& c) { return 2 * c.heads * c.head_dim; }  // [q_h | gate_h] per head
inline std::int64_t key_width(const forward_config& c) { return c.deltanet.key_heads * c.deltanet.key_dim; }
inline std::int64_t value_width(const forward_config& c) { return c.deltanet.value_heads * c.deltanet.value_dim; }
inline std::int64_t qkv_width(const forward_config& c) { return c.deltanet.conv_channels(); }
inline std::int64_t qkvz_width(const forward_config& c) { return c.deltanet.conv_channels() + value_width(c); }
inline std::int64_t value_heads(const forward_config& c) { return c.deltanet.value_heads; }
inline std::int64_t two_value_heads(const forward_config& c) { return 2 * c.deltanet.value_heads; }
inline std::int64_t value_dim(const forward_config& c) { return c.deltanet.value_dim; }
inline std::int64_t conv_kernel(const forward_config& c) { return c.deltanet.conv_kernel; }

// ---- tensors ----
inline constexpr std::array<tensor_spec, 6> gated_attention{{
    {.name = "q_proj", .to = slot::q, .what = role::linear, .rows = gated_q_width, .cols = hidden, .bias = qkv_bias, .fused = "qkv_proj"},
    {.name = "k_proj", .to = slot::k, .what = role::linear, .rows = kv_width, .cols = hidden, .bias = qkv_bias, .fused = "qkv_proj"},
    {.name = "v_proj", .to = slot::v, .what = role::linear, .rows = kv_width, .cols = hidden, .bias = qkv_bias, .fused = "qkv_proj"},
    {.name = "o_proj", .to = slot::o, .what = role::linear, .rows = hidden, .cols = q_width},
    {.name = "q_norm", .to = slot::q_norm, .what = role::norm, .rows = head_dim},
    {.name = "k_norm", .to = slot::k_norm, .what = role::norm, .rows = head_dim},
}};

// The DeltaNet's never-quantized parameters, alike in both families.
#define PQ_DELTANET_PARAMETERS                                                                                        \
  {.name = "conv1d", .to = slot::conv, .what = role::parameter, .rows = qkv_width, .cols = one, .depth = conv_kernel}, \
  {.name = "dt_bias", .to = slot::dt_bias, .what = role::parameter, .rows = value_heads, .bare = true},                \
  {.name = "A_log", .to = slot::a_log, .what = role::parameter, .rows = value_heads, .bare = true},                    \
  {.name = "norm", .to = slot::gated_norm, .what = role::norm, .rows = value_dim},                                     \
  {.name = "out_proj", .to = slot::out, .what = role::linear, .rows = hidden, .cols = value_width}

// Qwen3.5: separate projections, fused by vLLM as in_proj_qkvz (qkv + z) and in_proj_ba (b + a).
inline constexpr std::array<tensor_spec, 9> deltanet_split{{
    {.name = "in_proj_qkv", .to = slot::qkv, .what = role::linear, .rows = qkv_width, .cols = hidden, .fused = "in_proj_qkvz"},
    {.name = "in_proj_z", .to = slot::z, .what = role::linear, .rows = value_width, .cols = hidden, .fused = "in_proj_qkvz"},
    {.name = "in_proj_b", .to = slot::b, .what = role::linear, .rows = value_heads, .cols = hidden, .fused = "in_proj_ba"},
    {.name = "in_proj_a", .to = slot::a, .what = role::linear, .rows = value_heads, .cols = hidden, .fused = "in_proj_ba"},
    PQ_DELTANET_PARAMETERS,
}};
// Qwen3-Next: stored fused, interleaved per key head ([q k v z] and [b a] of each key head's group in turn).
inline constexpr std::array<tensor_spec, 7> deltanet_fused{{
    {.name = "in_proj_qkvz", .to = slot::qkv, .what = role::linear, .rows = qkvz_width, .cols = hidden},
    {.name = "in_proj_ba", .to = slot::b, .what = role::linear, .rows = two_value_heads, .cols = hidden},
    PQ_DELTANET_PARAMETERS,
}};
#undef PQ_DELTANET_PARAMETERS

// ---- layer kinds: {mixer} x {moe, mlp} ----
template <const auto& mixer_tensors, part mixer_part, const char* path>
inline constexpr std::array<block_spec, 5> moe_layer{{
    {.path = "", .of = part::layer, .tensors = norms},
    {.path = path, .of = mixer_part, .tensors = mixer_tensors},
    {.path = "mlp", .of = part::moe, .tensors = moe_gates},
    {.path = "mlp.experts", .of = part::experts, .tensors = swiglu<expert_intermediate>, .per_expert = true,
     .grouping = units::whole_block},
    {.path = "mlp.shared_expert", .of = part::shared_expert, .tensors = swiglu<shared_intermediate>, .when = shared_expert},
}};
template <const auto& mixer_tensors, part mixer_part, const char* path>
inline constexpr std::array<block_spec, 3> mlp_layer{{
    {.path = "", .of = part::layer, .tensors = norms},
    {.path = path, .of = mixer_part, .tensors = mixer_tensors},
    {.path = "mlp", .of = part::mlp, .tensors = swiglu<intermediate>},
}};
inline constexpr char linear_attn[] = "linear_attn";
inline constexpr char self_attn[] = "self_attn";

template <const auto& deltanet_tensors>
inline constexpr std::array<layer_kind, 4> kinds{{
    {.name = "deltanet_moe", .mix = mixer::deltanet, .ffn = feed_forward::moe,
     .blocks = moe_layer<deltanet_tensors, part::deltanet, linear_attn>},
    {.name = "attention_moe", .mix = mixer::attention, .ffn = feed_forward::moe,
     .blocks = moe_layer<gated_attention, part::attention, self_attn>},
    {.name = "deltanet_mlp", .mix = mixer::deltanet, .ffn = feed_forward::mlp,
     .blocks = mlp_layer<deltanet_tensors, part::deltanet, linear_attn>},
    {.name = "attention_mlp", .mix = mixer::attention, .ffn = feed_forward::mlp,
     .blocks = mlp_layer<gated_attention, part::attention, self_attn>},
}};
inline int kind_of(const forward_config& c, int layer) {
  return (c.deltanet.is_layer(layer) ? 0 : 1) + (c.is_moe_layer(layer) ? 0 : 2);
}

inline constexpr std::array<tensor_spec, 3> globals_under(std::string_view embed, std::string_view norm) {
  return {{
      {.name = embed, .to = slot::embed, .what = role::embedding, .rows = vocab, .cols = hidden},
      {.name = norm, .to = slot::final_norm, .what = role::norm, .rows = hidden},
      {.name = "lm_head", .to = slot::lm_head, .what = role::unquantized, .rows = vocab, .cols = hidden, .when = untied},
  }};
}

// The MTP head's own tensors (Qwen3.5 / Qwen3-Next `mtp.*`; arch::mtp_spec). fc is the ColumnParallelLinear vLLM
// quantizes with the rest of the draft (its own unit); the norms are (1 + w) like the model's.
inline std::int64_t two_hidden(const forward_config& c) { return 2 * c.hidden; }
inline constexpr std::array<tensor_spec, 4> mtp_tensors{{
    {.name = "mtp.fc", .to = slot::mtp_fc, .what = role::linear, .rows = hidden, .cols = two_hidden},
    {.name = "mtp.pre_fc_norm_embedding", .to = slot::mtp_embed_norm, .what = role::norm, .rows = hidden},
    {.name = "mtp.pre_fc_norm_hidden", .to = slot::mtp_hidden_norm, .what = role::norm, .rows = hidden},
    {.name = "mtp.norm", .to = slot::mtp_norm, .what = role::norm, .rows = hidden},
}};
// Every MTP layer is a full-attention MoE layer (vLLM builds Qwen3_5DecoderLayer(layer_type="full_attention")): kind 1
// of `kinds` below.
inline constexpr mtp_spec mtp{.tensors = mtp_tensors, .layers = "mtp.layers", .kind = 1};
static_assert(kinds<deltanet_split>[1].mix == mixer::attention && kinds<deltanet_split>[1].ffn == feed_forward::moe);

// ---- config.json fields both families spell alike ----
inline void read(const config_reader& r, forward_config& f) {
  f.qkv_bias = r.boolean("attention_bias", false);
  f.qk_norm = true;
  f.attention_output_gate = true;
  f.norm_plus_one = true;
  const nlohmann::json& j = r.json();
  const nlohmann::json rope = j.contains("rope_parameters") && j["rope_parameters"].is_object() ? j["rope_parameters"] : j;
  const double partial = r.number(rope, "partial_rotary_factor", r.number("partial_rotary_factor", 1.0));
  if (!(partial > 0 && partial <= 1)) r.fail("partial_rotary_factor must be in (0, 1]");
  f.rotary_dims = static_cast<std::int64_t>(static_cast<double>(f.head_dim) * partial);
  if (f.rotary_dims % 2) r.fail("head_dim * partial_rotary_factor must be even");
  deltanet_config& d = f.deltanet;
  d.key_heads = r.count("linear_num_key_heads");
  d.value_heads = r.count("linear_num_value_heads");
  d.key_dim = r.integer("linear_key_head_dim");
  d.value_dim = r.integer("linear_value_head_dim");
  d.conv_kernel = r.integer("linear_conv_kernel_dim", 4);
  if (d.key_heads == 0 || d.value_heads % d.key_heads || d.key_dim == 0 || d.value_dim == 0 || d.conv_kernel == 0)
    r.fail("linear_num_value_heads must be a positive multiple of linear_num_key_heads, head dims and kernel positive");
  d.layers.assign(static_cast<std::size_t>(f.layers), false);
  if (j.contains("layer_types")) {
    const auto& t = j["layer_types"];
    if (!t.is_array() || t.size() != static_cast<std::size_t>(f.layers)) r.fail("\"layer_types\" must list every layer");
    for (std::size_t l = 0; l < t.size(); ++l) {
      if (t[l] == "linear_attention") d.layers[l] = true;
      else if (t[l] != "full_attention") r.fail("\"layer_types\" entries must be linear_attention or full_attention");
    }
  } else {  // full_attention_interval (default 4): every interval-th layer is full attention
    const int interval = r.count("full_attention_interval", 4);
    if (interval < 1) r.fail("full_attention_interval must be at least 1");
    for (int l = 0; l < f.layers; ++l) d.layers[static_cast<std::size_t>(l)] = (l + 1) % interval != 0;
  }
  read_moe(r, f, /*renormalize_default=*/true, /*shared=*/true);
  f.mtp_layers = r.count("mtp_num_hidden_layers", 0);
}

}  // namespace pq::arch::qwen3_hybrid
