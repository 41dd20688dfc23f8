// pq/arch/config.hpp: what pq reads from a Hugging Face config.json (the shape facts the forward needs,
// independent of how config.json spells them), and the checked reader the architecture descriptions
// read their own fields with.
#pragma once
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include <pq/error.hpp>

namespace pq::arch {

struct description;  // pq/arch/description.hpp

struct config_error : pq::error {
  using pq::error::error;
};

// How the MoE block of a layer routes (qwen2_moe, qwen3_moe); absent for dense models.
struct moe_config {
  int num_experts = 0;
  int experts_per_token = 0;
  std::int64_t expert_intermediate = 0;
  bool renormalize_top_k = false;               // norm_topk_prob
  std::int64_t shared_expert_intermediate = 0;  // 0: no shared expert (qwen3_moe)
  int sparse_step = 1;                          // decoder_sparse_step
  std::vector<int> dense_layers;                // mlp_only_layers
};

// Precision of the rotary inverse frequencies. Hugging Face computes them in fp32 and then
// casts the buffer with the model, so a bf16 checkpoint run in fp32 rotates with
// bf16-rounded frequencies; the reference logits of the test models need bf16 here.
enum class rope_precision { fp32, bf16, fp16 };

// The gated DeltaNet (linear attention) layers of the hybrid Qwen3-Next / Qwen3.5 decoders.
struct deltanet_config {
  int key_heads = 0, value_heads = 0;         // linear_num_key_heads, linear_num_value_heads
  std::int64_t key_dim = 0, value_dim = 0;    // linear_key_head_dim, linear_value_head_dim (per head)
  std::int64_t conv_kernel = 0;               // linear_conv_kernel_dim
  std::vector<bool> layers;                   // per layer: a DeltaNet layer (layer_types "linear_attention")
  bool is_layer(int l) const { return static_cast<std::size_t>(l) < layers.size() && layers[static_cast<std::size_t>(l)]; }
  std::int64_t conv_channels() const { return 2 * key_heads * key_dim + value_heads * value_dim; }
};

struct forward_config {
  // Which tensors each layer has and which math runs them; set by parse_config (and by hand for
  // models built in memory). Every tensor name pq uses comes from here.
  const description* architecture = nullptr;
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
  std::int64_t rotary_dims = 0;      // leading dims of each head that rotate (partial_rotary_factor); 0: head_dim
  bool attention_output_gate = false;  // q_proj also carries a per-head sigmoid gate of the attention output
  bool norm_plus_one = false;  // RMSNorm gains stored as offsets from 1: the layer, q/k and final norms scale by 1 + w
  deltanet_config deltanet;    // key_heads == 0: no DeltaNet layers
  std::int64_t rotary() const { return rotary_dims > 0 ? rotary_dims : head_dim; }
  moe_config moe;         // num_experts == 0: dense
  int mtp_layers = 0;     // MTP head layers (mtp_num_hidden_layers); used where the description has an MTP head

  bool is_moe_layer(int layer) const {
    if (moe.num_experts == 0) return false;
    for (int d : moe.dense_layers)
      if (d == layer) return false;
    return (layer + 1) % moe.sparse_step == 0;
  }
};

struct model_config {
  std::string model_type;  // as config.json spells it
  std::string dtype;       // "bfloat16", "float16", "float32" (torch_dtype or dtype)
  forward_config shape;    // shape.architecture: the description model_type selected
  const description& architecture() const { return *shape.architecture; }
};

// Typed, checked access to the fields of one config.json object; every failure names the file and key.
class config_reader {
 public:
  config_reader(const nlohmann::json& j, std::string source) : j_(&j), src_(std::move(source)) {
    if (!j.is_object()) fail("not a JSON object");
  }
  const nlohmann::json& json() const { return *j_; }
  const std::string& source() const { return src_; }
  [[noreturn]] void fail(const std::string& what) const { throw config_error(src_ + ": " + what); }

  bool has(const char* key) const { return j_->contains(key) && !(*j_)[key].is_null(); }
  std::string str(const char* key) const {
    if (!j_->contains(key) || !(*j_)[key].is_string()) fail(std::string("missing or non-string \"") + key + "\"");
    return (*j_)[key].get<std::string>();
  }
  std::int64_t integer(const char* key, std::optional<std::int64_t> fallback = {}) const {
    if (!has(key)) {
      if (fallback) return *fallback;
      fail(std::string("missing \"") + key + "\"");
    }
    const auto& v = (*j_)[key];
    if (!v.is_number_integer() || v.get<std::int64_t>() < 0)
      fail(std::string("\"") + key + "\" must be a non-negative integer");
    return v.get<std::int64_t>();
  }
  int count(const char* key, std::optional<std::int64_t> fallback = {}) const {  // an int-sized field
    const std::int64_t v = integer(key, fallback);
    if (v > std::numeric_limits<int>::max()) fail(std::string("\"") + key + "\" is absurdly large");
    return static_cast<int>(v);
  }
  double number(const nlohmann::json& o, const char* key, double fallback) const {
    if (!o.contains(key) || o[key].is_null()) return fallback;
    if (!o[key].is_number()) fail(std::string("\"") + key + "\" must be a number");
    return o[key].get<double>();
  }
  double number(const char* key, double fallback) const { return number(*j_, key, fallback); }
  bool boolean(const char* key, bool fallback) const {
    if (!has(key)) return fallback;
    if (!(*j_)[key].is_boolean()) fail(std::string("\"") + key + "\" must be true or false");
    return (*j_)[key].get<bool>();
  }

 private:
  const nlohmann::json* j_;
  std::string src_;
};

}  // namespace pq::arch
