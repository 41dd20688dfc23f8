// pq/model/forward_config.hpp: the shape facts the forward needs, independent of how config.json spells them.
#pragma once
#include <cstdint>
#include <vector>

namespace pq::model {

// How the MoE block of a layer routes (qwen2_moe, qwen3_moe); absent for dense models.
struct moe_config {
  int num_experts = 0;
  int experts_per_token = 0;
  std::int64_t expert_intermediate = 0;
  bool renormalize_top_k = false;            // norm_topk_prob
  std::int64_t shared_expert_intermediate = 0;  // 0: no shared expert (qwen3_moe)
  int sparse_step = 1;                       // decoder_sparse_step
  std::vector<int> dense_layers;             // mlp_only_layers
};

// Precision of the rotary inverse frequencies. Hugging Face computes them in fp32 and then
// casts the buffer with the model, so a bf16 checkpoint run in fp32 rotates with
// bf16-rounded frequencies; the reference logits of the test models need bf16 here.
enum class rope_precision { fp32, bf16, fp16 };

struct forward_config {
  std::int64_t hidden = 0;
  std::int64_t intermediate = 0;  // dense MLP width
  int layers = 0;
  int heads = 0;
  int kv_heads = 0;
  std::int64_t head_dim = 0;
  std::int64_t vocab = 0;
  double rms_eps = 1e-6;
  double rope_theta = 10000.0;
  rope_precision rope_frequencies = rope_precision::fp32;
  bool tied_embeddings = false;
  bool qkv_bias = false;  // qwen2 q/k/v bias
  bool qk_norm = false;   // qwen3 per-head RMSNorm of q and k
  moe_config moe;         // num_experts == 0: dense

  bool is_moe_layer(int layer) const {
    if (moe.num_experts == 0) return false;
    for (int d : moe.dense_layers)
      if (d == layer) return false;
    return (layer + 1) % moe.sparse_step == 0;
  }
};

}  // namespace pq::model
