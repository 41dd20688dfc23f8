// pq/arch/qwen2_moe.hpp: Qwen2-MoE (q/k/v bias; softmax router, top-k without renormalisation by default;
// a shared expert scaled by sigmoid(shared_expert_gate); decoder_sparse_step and mlp_only_layers).
#pragma once
#include <pq/arch/llama_layers.hpp>

namespace pq::arch {

namespace qwen2_moe_family {
inline constexpr std::array<std::string_view, 1> model_types{"qwen2_moe"};
inline void read(const config_reader& r, forward_config& f) {
  f.qkv_bias = r.boolean("qkv_bias", true);
  llama_lineage::read_moe(r, f, /*renormalize_default=*/false, /*shared=*/true);
}
}  // namespace qwen2_moe_family

inline constexpr description qwen2_moe =
    llama_lineage::family("qwen2_moe", qwen2_moe_family::model_types, qwen2_moe_family::read);

}  // namespace pq::arch
