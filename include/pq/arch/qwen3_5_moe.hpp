// pq/arch/qwen3_5_moe.hpp: Qwen3.5 / Qwen3.6 MoE, the text decoder of Qwen3_5MoeForConditionalGeneration: its fields
// under config.json's "text_config", its tensors under model.language_model (the vision tower model.visual.* is copied
// through as stored), and its MTP head mtp.* (mtp_num_hidden_layers full-attention MoE layers, experts packed as
// released; described, run by model/mtp.hpp, not yet quantized: the export copies it through). Routed experts are read packed as released (mlp.experts.gate_up_proj
// [E, 2I, H], down_proj [E, H, I]) or one module per expert as transformers' save_pretrained writes them
// (model/checkpoint_weights.hpp presents both as experts.<e>.gate_proj/up_proj/down_proj, as vLLM names them).
#pragma once
#include <pq/arch/qwen3_hybrid_layers.hpp>

namespace pq::arch {

namespace qwen3_5_moe_family {
inline constexpr std::array<std::string_view, 1> model_types{"qwen3_5_moe"};
inline constexpr auto globals = qwen3_hybrid::globals_under("model.language_model.embed_tokens", "model.language_model.norm");
}  // namespace qwen3_5_moe_family

inline constexpr description qwen3_5_moe{
    .name = "qwen3_5_moe", .model_types = qwen3_5_moe_family::model_types, .read_config = qwen3_hybrid::read,
    .layers = "model.language_model.layers", .globals = qwen3_5_moe_family::globals,
    .kinds = qwen3_hybrid::kinds<qwen3_hybrid::deltanet_split>, .kind_of = qwen3_hybrid::kind_of,
    .config_section = "text_config", .mtp = &qwen3_hybrid::mtp};

}  // namespace pq::arch
