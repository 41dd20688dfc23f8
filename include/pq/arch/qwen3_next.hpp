// pq/arch/qwen3_next.hpp: Qwen3-Next (the DeltaNet projections stored fused and interleaved per key head:
// in_proj_qkvz, in_proj_ba; one module per routed expert).
#pragma once
#include <pq/arch/qwen3_hybrid_layers.hpp>

namespace pq::arch {

namespace qwen3_next_family {
inline constexpr std::array<std::string_view, 1> model_types{"qwen3_next"};
inline constexpr auto globals = qwen3_hybrid::globals_under("model.embed_tokens", "model.norm");
}  // namespace qwen3_next_family

inline constexpr description qwen3_next{
    .name = "qwen3_next", .model_types = qwen3_next_family::model_types, .read_config = qwen3_hybrid::read,
    .layers = "model.layers", .globals = qwen3_next_family::globals,
    .kinds = qwen3_hybrid::kinds<qwen3_hybrid::deltanet_fused>, .kind_of = qwen3_hybrid::kind_of};

}  // namespace pq::arch
