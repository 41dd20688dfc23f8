// tests/model/checkpoint_fixture.hpp: a minimal read-only safetensors/config.json reader for the model tests.
// STOPGAP until branch io lands: then pq::io::model_dir and pq::model::model_config replace it (the
// tests only use open_checkpoint / load_tokens below, so the swap is local to this file).
#pragma once
#include <pq/model/forward.hpp>

#include <nlohmann/json.hpp>

#include <bit>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>

namespace pq::model::test {

class safetensors_blob {
public:
  explicit safetensors_blob(const std::filesystem::path& p) {
    std::ifstream f(p, std::ios::binary);
    if (!f) throw model_error("cannot open " + p.string());
    bytes_.assign(std::istreambuf_iterator<char>(f), {});
    std::uint64_t n = 0;
    std::memcpy(&n, bytes_.data(), 8);
    header_ = nlohmann::json::parse(bytes_.begin() + 8, bytes_.begin() + 8 + static_cast<std::ptrdiff_t>(n));
    base_ = 8 + n;
  }
  bool has(const std::string& name) const { return header_.contains(name); }
  const nlohmann::json& info(const std::string& name) const { return header_.at(name); }
  const char* data(const std::string& name) const {
    return bytes_.data() + base_ + info(name)["data_offsets"][0].get<std::size_t>();
  }
  dense_tensor load_float(const std::string& name) const {
    const auto& t = info(name);
    dense_tensor d{t["shape"].get<std::vector<std::int64_t>>(), {}};
    const std::string dtype = t["dtype"];
    const std::size_t bytes = t["data_offsets"][1].get<std::size_t>() - t["data_offsets"][0].get<std::size_t>();
    const char* p = data(name);
    if (dtype == "BF16") {
      for (std::size_t i = 0; i < bytes / 2; ++i) {
        std::uint16_t v;
        std::memcpy(&v, p + 2 * i, 2);
        d.data.push_back(std::bit_cast<float>(static_cast<std::uint32_t>(v) << 16));
      }
    } else if (dtype == "F32") {
      d.data.resize(bytes / 4);
      std::memcpy(d.data.data(), p, bytes);
    } else {
      throw model_error("fixture: unsupported dtype " + dtype + " of " + name);
    }
    return d;
  }

private:
  std::vector<char> bytes_;
  nlohmann::json header_;
  std::size_t base_ = 0;
};

class checkpoint_fixture final : public weight_provider {
public:
  explicit checkpoint_fixture(const std::filesystem::path& dir) {
    std::ifstream f(dir / "model.safetensors.index.json");
    const auto index = nlohmann::json::parse(f);
    for (const auto& [name, shard] : index["weight_map"].items()) {
      const std::string s = shard;
      if (!shards_.contains(s)) shards_[s] = std::make_shared<safetensors_blob>(dir / s);
      where_[name] = shards_[s].get();
    }
    std::ifstream cf(dir / "config.json");
    const auto j = nlohmann::json::parse(cf);
    config_.hidden = j["hidden_size"];
    config_.intermediate = j["intermediate_size"];
    config_.layers = j["num_hidden_layers"];
    config_.heads = j["num_attention_heads"];
    config_.kv_heads = j["num_key_value_heads"];
    config_.head_dim = j.value("head_dim", config_.hidden / config_.heads);
    config_.vocab = j["vocab_size"];
    config_.rms_eps = j["rms_norm_eps"];
    config_.rope_theta = j["rope_parameters"]["rope_theta"];
    config_.rope_frequencies = j.value("dtype", "") == "bfloat16" ? rope_precision::bf16 : rope_precision::fp32;
    config_.tied_embeddings = j["tie_word_embeddings"];
    config_.qkv_bias = j.value("qkv_bias", j.value("attention_bias", false));
    if (j.contains("num_experts")) {
      config_.moe.num_experts = j["num_experts"];
      config_.moe.experts_per_token = j["num_experts_per_tok"];
      config_.moe.expert_intermediate = j["moe_intermediate_size"];
      config_.moe.renormalize_top_k = j["norm_topk_prob"];
      config_.moe.shared_expert_intermediate = j.value("shared_expert_intermediate_size", 0);
      config_.moe.sparse_step = j["decoder_sparse_step"];
      config_.moe.dense_layers = j["mlp_only_layers"].get<std::vector<int>>();
    }
  }
  const forward_config& config() const { return config_; }
  bool has(const std::string& name) const override { return where_.contains(name); }
  dense_tensor load(const std::string& name) const override { return where_.at(name)->load_float(name); }

private:
  std::map<std::string, std::shared_ptr<safetensors_blob>> shards_;
  std::map<std::string, const safetensors_blob*> where_;
  forward_config config_;
};

inline token_batch load_tokens(const safetensors_blob& f, const std::string& name, std::int64_t vocab) {
  const auto shape = f.info(name)["shape"].get<std::vector<std::int64_t>>();
  std::vector<std::int32_t> ids(static_cast<std::size_t>(shape[0] * shape[1]));
  std::memcpy(ids.data(), f.data(name), ids.size() * 4);
  return make_token_batch(shape, std::move(ids), vocab, "tokens.safetensors:" + name);
}

inline std::filesystem::path model_path(const char* name) { return std::filesystem::path(PQ_MODELS_DIR) / name; }

}  // namespace pq::model::test
