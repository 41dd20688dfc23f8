// pq/arch/qwen2.hpp: Qwen2 (the Llama layer with q/k/v bias, on unless config.json says qkv_bias false).
#pragma once
#include <pq/arch/llama_layers.hpp>

namespace pq::arch {

namespace qwen2_family {
inline constexpr std::array<std::string_view, 1> model_types{"qwen2"};
inline void read(const config_reader& r, forward_config& f) {
  f.qkv_bias = r.boolean("qkv_bias", true);
  llama_lineage::read_dense(r, f);
}
}  // namespace qwen2_family

inline constexpr description qwen2 = llama_lineage::family("qwen2", qwen2_family::model_types, qwen2_family::read);

}  // namespace pq::arch
