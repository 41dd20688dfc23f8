// pq/arch/qwen3.hpp: Qwen3 (the Llama layer with per-head RMSNorm of q and k before RoPE).
#pragma once
#include <pq/arch/llama_layers.hpp>

namespace pq::arch {

namespace qwen3_family {
inline constexpr std::array<std::string_view, 1> model_types{"qwen3"};
inline void read(const config_reader& r, forward_config& f) {
  f.qkv_bias = r.boolean("attention_bias", false);
  f.qk_norm = true;
  llama_lineage::read_dense(r, f);
}
}  // namespace qwen3_family

inline constexpr description qwen3 = llama_lineage::family("qwen3", qwen3_family::model_types, qwen3_family::read);

}  // namespace pq::arch
