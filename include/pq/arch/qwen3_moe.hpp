// pq/arch/qwen3_moe.hpp: Qwen3-MoE (q/k norm; top-k renormalised by default; no shared expert).
#pragma once
#include <pq/arch/llama_layers.hpp>

namespace pq::arch {

namespace qwen3_moe_family {
inline constexpr std::array<std::string_view, 1> model_types{"qwen3_moe"};
inline void read(const config_reader& r, forward_config& f) {
  f.qkv_bias = r.boolean("attention_bias", false);
  f.qk_norm = true;
  llama_lineage::read_moe(r, f, /*renormalize_default=*/true, /*shared=*/false);
}
}  // namespace qwen3_moe_family

inline constexpr description qwen3_moe =
    llama_lineage::family("qwen3_moe", qwen3_moe_family::model_types, qwen3_moe_family::read);

}  // namespace pq::arch
