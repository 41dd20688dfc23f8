// pq/arch/registry.hpp: every architecture pq reads, and config.json parsed into a model_config through the
// description its model_type selects. Adding an architecture: its header, one entry in `all` (docs/arch.md).
#pragma once
#include <array>
#include <charconv>
#include <string>
#include <string_view>

#include <pq/arch/description.hpp>
#include <pq/arch/llama.hpp>
#include <pq/arch/qwen2.hpp>
#include <pq/arch/qwen2_moe.hpp>
#include <pq/arch/qwen3.hpp>
#include <pq/arch/qwen3_5_moe.hpp>
#include <pq/arch/qwen3_moe.hpp>
#include <pq/arch/qwen3_next.hpp>

namespace pq::arch {

inline constexpr std::array all{&llama, &qwen2, &qwen3, &qwen2_moe, &qwen3_moe, &qwen3_next, &qwen3_5_moe};

// The description that reads config.json's `model_type`, or nullptr.
inline const description* find(std::string_view model_type) {
  for (const description* d : all)
    for (std::string_view t : d->model_types)
      if (t == model_type) return d;
  return nullptr;
}

// "llama, mistral, qwen2, ...": every model_type pq reads, for messages and --help.
inline std::string supported_model_types() {
  std::string list;
  for (const description* d : all)
    for (std::string_view t : d->model_types) list.append(list.empty() ? "" : ", ").append(t);
  return list;
}

inline model_config parse_config(const nlohmann::json& top, std::string_view source) {
  const config_reader outer(top, std::string(source));
  model_config c;
  c.model_type = outer.str("model_type");
  forward_config& f = c.shape;
  f.architecture = find(c.model_type);
  if (!f.architecture)
    outer.fail("unsupported architecture '" + c.model_type + "' (supported: " + supported_model_types() + ")");
  // A multimodal checkpoint keeps the decoder's fields in a section (Qwen3.5: "text_config").
  const std::string section(f.architecture->config_section);
  const bool nested = !section.empty() && top.contains(section);
  if (nested && !top[section].is_object()) outer.fail("\"" + section + "\" must be an object");
  const nlohmann::json& j = nested ? top[section] : top;
  const config_reader r(j, nested ? std::string(source) + ": " + section : std::string(source));
  const auto dtype_of = [](const nlohmann::json& o) -> std::string {
    return o.contains("torch_dtype") && o["torch_dtype"].is_string() ? o["torch_dtype"].get<std::string>()
         : o.contains("dtype") && o["dtype"].is_string()             ? o["dtype"].get<std::string>()
                                                                      : "";
  };
  c.dtype = dtype_of(top);
  if (c.dtype.empty()) c.dtype = dtype_of(j);
  if (c.dtype.empty()) c.dtype = "float32";
  f.hidden = r.integer("hidden_size");
  f.layers = r.count("num_hidden_layers");
  f.heads = r.count("num_attention_heads");
  f.kv_heads = r.count("num_key_value_heads", f.heads);
  if (f.heads == 0 || f.kv_heads == 0 || f.heads % f.kv_heads)
    r.fail("num_attention_heads must be a positive multiple of num_key_value_heads");
  f.head_dim = r.integer("head_dim", f.hidden / f.heads);
  f.vocab = r.integer("vocab_size");
  f.rms_eps = r.number("rms_norm_eps", 1e-6);
  const nlohmann::json rope = j.contains("rope_parameters") && j["rope_parameters"].is_object() ? j["rope_parameters"] : j;
  f.rope_theta = r.number(rope, "rope_theta", r.number("rope_theta", 10000.0));
  if (rope.contains("rope_type") && rope["rope_type"].is_string() && rope["rope_type"] != "default")
    r.fail("rope_type '" + rope["rope_type"].get<std::string>() + "' is not supported (only default)");
  // Hugging Face casts the inverse frequencies with the model, so they carry the checkpoint's precision.
  f.rope_frequencies = c.dtype == "bfloat16" ? rope_precision::bf16
                     : c.dtype == "float16"  ? rope_precision::fp16
                                             : rope_precision::fp32;
  f.tied_embeddings = r.boolean("tie_word_embeddings", outer.boolean("tie_word_embeddings", false));
  f.architecture->read_config(r, f);
  if (f.hidden <= 0 || f.layers <= 0 || f.vocab <= 0 || f.head_dim <= 0)
    r.fail("hidden_size, num_hidden_layers, vocab_size and head_dim must be positive");
  return c;
}

// The decoder layer a module or tensor name belongs to ("model.layers.3.mlp..." -> 3), under the layer
// path of any architecture pq reads; -1 for model-wide tensors.
inline int layer_of(const std::string& name) {
  for (const description* d : all) {
    const std::string prefix = std::string(d->layers) + ".";
    if (!name.starts_with(prefix)) continue;
    int layer = -1;
    const char* first = name.data() + prefix.size();
    auto [end, ec] = std::from_chars(first, name.data() + name.size(), layer);
    return ec == std::errc{} && end != first ? layer : -1;
  }
  return -1;
}

}  // namespace pq::arch
