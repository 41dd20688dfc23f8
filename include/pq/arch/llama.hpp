// pq/arch/llama.hpp: Llama and Mistral (GQA attention, optional attention_bias, SwiGLU MLP).
#pragma once
#include <pq/arch/llama_layers.hpp>

namespace pq::arch {

namespace llama_family {
inline constexpr std::array<std::string_view, 2> model_types{"llama", "mistral"};
inline void read(const config_reader& r, forward_config& f) {
  f.qkv_bias = r.boolean("attention_bias", false);
  llama_lineage::read_dense(r, f);
}
}  // namespace llama_family

inline constexpr description llama = llama_lineage::family("llama", llama_family::model_types, llama_family::read);

}  // namespace pq::arch
