// pq/model/config.hpp: a Hugging Face config.json read into what pq needs: the architecture and the
// shapes of the forward. Supported: llama, mistral, qwen2, qwen3, qwen2_moe, qwen3_moe.
#pragma once
#include <array>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include <pq/error.hpp>
#include <pq/model/forward_config.hpp>

namespace pq::model {

enum class arch { llama, mistral, qwen2, qwen3, qwen2_moe, qwen3_moe };

inline constexpr std::array<std::string_view, 6> supported_model_types{"llama",   "mistral",   "qwen2",
                                                                       "qwen3",   "qwen2_moe", "qwen3_moe"};

struct config_error : pq::error {
  using pq::error::error;
};

struct model_config {
  arch architecture = arch::llama;
  std::string model_type;  // as config.json spells it
  std::string dtype;       // "bfloat16", "float16", "float32" (torch_dtype or dtype)
  forward_config shape;
};

inline model_config parse_config(const nlohmann::json& j, std::string_view source) {
  const std::string src(source);
  if (!j.is_object()) throw config_error(src + ": not a JSON object");
  const auto str = [&](const char* key) -> std::string {
    if (!j.contains(key) || !j[key].is_string()) throw config_error(src + ": missing or non-string \"" + key + "\"");
    return j[key].get<std::string>();
  };
  const auto integer = [&](const char* key, std::optional<std::int64_t> fallback = {}) -> std::int64_t {
    if (!j.contains(key) || j[key].is_null()) {
      if (fallback) return *fallback;
      throw config_error(src + ": missing \"" + key + "\"");
    }
    if (!j[key].is_number_integer() || j[key].get<std::int64_t>() < 0)
      throw config_error(src + ": \"" + key + "\" must be a non-negative integer");
    return j[key].get<std::int64_t>();
  };
  const auto count = [&](const char* key, std::optional<std::int64_t> fallback = {}) -> int {  // an int-sized field
    const std::int64_t v = integer(key, fallback);
    if (v > std::numeric_limits<int>::max()) throw config_error(src + ": \"" + key + "\" is absurdly large");
    return static_cast<int>(v);
  };
  const auto number = [&](const nlohmann::json& o, const char* key, double fallback) -> double {
    if (!o.contains(key) || o[key].is_null()) return fallback;
    if (!o[key].is_number()) throw config_error(src + ": \"" + key + "\" must be a number");
    return o[key].get<double>();
  };
  const auto boolean = [&](const char* key, bool fallback) -> bool {
    if (!j.contains(key) || j[key].is_null()) return fallback;
    if (!j[key].is_boolean()) throw config_error(src + ": \"" + key + "\" must be true or false");
    return j[key].get<bool>();
  };

  model_config c;
  c.model_type = str("model_type");
  bool known = false;
  for (std::size_t i = 0; i < supported_model_types.size(); ++i)
    if (supported_model_types[i] == c.model_type) {
      c.architecture = static_cast<arch>(i);
      known = true;
    }
  if (!known) {
    std::string list;
    for (auto t : supported_model_types) list.append(list.empty() ? "" : ", ").append(t);
    throw config_error(src + ": unsupported architecture '" + c.model_type + "' (supported: " + list + ")");
  }
  c.dtype = j.contains("torch_dtype") && j["torch_dtype"].is_string() ? j["torch_dtype"].get<std::string>()
          : j.contains("dtype") && j["dtype"].is_string()             ? j["dtype"].get<std::string>()
                                                                       : "float32";
  forward_config& f = c.shape;
  f.hidden = integer("hidden_size");
  f.layers = count("num_hidden_layers");
  f.heads = count("num_attention_heads");
  f.kv_heads = count("num_key_value_heads", f.heads);
  if (f.heads == 0 || f.kv_heads == 0 || f.heads % f.kv_heads)
    throw config_error(src + ": num_attention_heads must be a positive multiple of num_key_value_heads");
  f.head_dim = integer("head_dim", f.hidden / f.heads);
  f.vocab = integer("vocab_size");
  f.rms_eps = number(j, "rms_norm_eps", 1e-6);
  const nlohmann::json rope = j.contains("rope_parameters") && j["rope_parameters"].is_object() ? j["rope_parameters"] : j;
  f.rope_theta = number(rope, "rope_theta", number(j, "rope_theta", 10000.0));
  if (rope.contains("rope_type") && rope["rope_type"].is_string() && rope["rope_type"] != "default")
    throw config_error(src + ": rope_type '" + rope["rope_type"].get<std::string>() + "' is not supported (only default)");
  // Hugging Face casts the inverse frequencies with the model, so they carry the checkpoint's precision.
  f.rope_frequencies = c.dtype == "bfloat16" ? rope_precision::bf16
                     : c.dtype == "float16"  ? rope_precision::fp16
                                             : rope_precision::fp32;
  f.tied_embeddings = boolean("tie_word_embeddings", false);
  const bool qwen2 = c.architecture == arch::qwen2 || c.architecture == arch::qwen2_moe;
  f.qkv_bias = qwen2 ? boolean("qkv_bias", true) : boolean("attention_bias", false);
  f.qk_norm = c.architecture == arch::qwen3 || c.architecture == arch::qwen3_moe;
  const bool moe = c.architecture == arch::qwen2_moe || c.architecture == arch::qwen3_moe;
  f.intermediate = integer("intermediate_size", moe ? std::optional<std::int64_t>(0) : std::nullopt);
  if (moe) {
    f.moe.num_experts = count("num_experts");
    f.moe.experts_per_token = count("num_experts_per_tok");
    f.moe.expert_intermediate = integer("moe_intermediate_size");
    f.moe.renormalize_top_k = boolean("norm_topk_prob", c.architecture == arch::qwen3_moe);
    f.moe.shared_expert_intermediate =
        c.architecture == arch::qwen2_moe ? integer("shared_expert_intermediate_size", 0) : 0;
    f.moe.sparse_step = count("decoder_sparse_step", 1);
    if (f.moe.sparse_step < 1) throw config_error(src + ": decoder_sparse_step must be at least 1");
    if (j.contains("mlp_only_layers") && j["mlp_only_layers"].is_array())
      for (const auto& l : j["mlp_only_layers"]) {
        if (!l.is_number_integer() || l.get<std::int64_t>() < 0 || l.get<std::int64_t>() >= f.layers)
          throw config_error(src + ": \"mlp_only_layers\" must list layer indices");
        f.moe.dense_layers.push_back(l.get<int>());
      }
    if (f.moe.experts_per_token < 1 || f.moe.experts_per_token > f.moe.num_experts)
      throw config_error(src + ": num_experts_per_tok must be between 1 and num_experts");
  }
  if (f.hidden <= 0 || f.layers <= 0 || f.vocab <= 0 || f.head_dim <= 0)
    throw config_error(src + ": hidden_size, num_hidden_layers, vocab_size and head_dim must be positive");
  return c;
}

}  // namespace pq::model
