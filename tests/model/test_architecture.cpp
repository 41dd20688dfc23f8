// Architecture descriptions: what they imply against checkpoints transformers wrote, the decision units
// against vLLM's module names, and the rules every description must keep.
#include <pq/arch/profile.hpp>
#include <pq/io/model_dir.hpp>

#include <doctest/doctest.h>

#include <filesystem>
#include <map>
#include <set>

namespace fs = std::filesystem;
using namespace pq;

namespace {
// A config.json of `model_type` with every field any family reads (MoE layers from layer 1 on).
nlohmann::json small_config(const std::string& model_type) {
  return {{"model_type", model_type}, {"hidden_size", 32}, {"intermediate_size", 48}, {"num_hidden_layers", 2},
          {"num_attention_heads", 4}, {"num_key_value_heads", 2}, {"vocab_size", 64}, {"num_experts", 3},
          {"num_experts_per_tok", 2}, {"moe_intermediate_size", 16}, {"shared_expert_intermediate_size", 24},
          {"mlp_only_layers", {0}}, {"linear_num_key_heads", 2}, {"linear_num_value_heads", 4},
          {"linear_key_head_dim", 8}, {"linear_value_head_dim", 8}, {"layer_types", {"linear_attention", "full_attention"}}};
}
}  // namespace

TEST_CASE("the description of each test model implies exactly the tensors transformers wrote") {
  for (const char* name : {"tiny-llama-code", "tiny-qwen2moe-code"}) {
    const fs::path root = fs::path(PQ_MODELS_DIR) / name;
    if (!fs::exists(root / "config.json")) {
      MESSAGE("skipped: " << root.string() << " is absent");
      continue;
    }
    CAPTURE(std::string(name));
    const auto dir = io::model_dir::open(root);
    const auto cfg = arch::parse_config(dir.config_json(), "config.json");
    std::map<std::string, std::vector<std::int64_t>> expected;
    for (const auto& [n, shape] : arch::expected_tensors(cfg.shape)) CHECK(expected.emplace(n, shape).second);
    std::set<std::string> stored;
    for (const auto& n : dir.tensor_names()) {
      stored.insert(n);
      CHECK_MESSAGE(expected.contains(n), n << " is in the checkpoint but not in the description");
      if (expected.contains(n)) CHECK(dir.tensor(n).shape == expected.at(n));
    }
    for (const auto& [n, shape] : expected) CHECK_MESSAGE(stored.contains(n), n << " is implied but not stored");
  }
}

TEST_CASE("decision units are the modules vLLM fuses") {
  const auto p = arch::make_profile(arch::parse_config(small_config("qwen2_moe"), "config.json"));
  std::vector<std::string> names;
  for (const auto& u : p.units) names.push_back(u.name);
  // vLLM's Qwen2MoeForCausalLM: QKVParallelLinear qkv_proj, MergedColumnParallelLinear gate_up_proj, one
  // FusedMoE `experts` per layer, the shared expert a Qwen2MoeMLP.
  const std::vector<std::string> expect{
      "model.layers.0.self_attn.qkv_proj",   "model.layers.0.self_attn.o_proj",
      "model.layers.0.mlp.gate_up_proj",     "model.layers.0.mlp.down_proj",
      "model.layers.1.self_attn.qkv_proj",   "model.layers.1.self_attn.o_proj",
      "model.layers.1.mlp.experts",          "model.layers.1.mlp.shared_expert.gate_up_proj",
      "model.layers.1.mlp.shared_expert.down_proj"};
  CHECK(names == expect);
  const auto& experts = p.units[6];
  REQUIRE(experts.members.size() == 3 * 3);
  CHECK(p.linears[static_cast<std::size_t>(experts.members[4])].name == "model.layers.1.mlp.experts.1.up_proj");
  CHECK(p.linears[static_cast<std::size_t>(experts.members[4])].expert == 1);
  CHECK(p.unquantized_linears ==
        std::vector<std::string>{"model.layers.1.mlp.gate", "model.layers.1.mlp.shared_expert_gate", "lm_head"});
}

TEST_CASE("every description keeps the rules the loader, the calibration hooks and the export rely on") {
  std::set<std::string_view> types;
  for (const arch::description* d : arch::all)
    for (std::string_view t : d->model_types) {
      CAPTURE(std::string(t));
      CHECK(types.insert(t).second);  // one description per model_type
      CHECK(arch::find(t) == d);
      const auto cfg = arch::parse_config(small_config(std::string(t)), "config.json");
      const auto p = arch::make_profile(cfg);
      std::vector<int> seen(p.linears.size(), 0);
      for (const auto& u : p.units) {
        REQUIRE_FALSE(u.members.empty());
        for (int m : u.members) {
          ++seen[static_cast<std::size_t>(m)];
          CHECK(p.linears[static_cast<std::size_t>(m)].layer == u.layer);
        }
      }
      for (int s : seen) CHECK(s == 1);  // every Linear in exactly one unit
      // Siblings of one fused module read one input (the hooks report them together): equal in_features.
      for (int l = 0; l < cfg.shape.layers; ++l)
        arch::for_each_block(cfg.shape, l, [&](const arch::block_spec& b, int, const std::string&) {
          std::map<std::string_view, std::int64_t> cols;
          for (const auto& t : b.tensors)
            if (t.what == arch::role::linear && !t.fused.empty() && (!t.when || t.when(cfg.shape))) {
              const auto [it, fresh] = cols.emplace(t.fused, t.cols(cfg.shape));
              CHECK(it->second == t.cols(cfg.shape));
            }
        });
      for (const auto& n : p.unquantized_linears) CHECK(p.find(n) == nullptr);
    }
}

TEST_CASE("qwen3: the Llama layer with per-head q/k RMSNorm and no q/k/v bias") {
  const auto cfg = arch::parse_config(small_config("qwen3"), "config.json");
  CHECK(cfg.shape.qk_norm);
  CHECK_FALSE(cfg.shape.qkv_bias);
  std::map<std::string, std::vector<std::int64_t>> tensors;
  for (const auto& [n, shape] : arch::expected_tensors(cfg.shape)) tensors[n] = shape;
  // transformers' Qwen3Attention: q_norm and k_norm are RMSNorm(head_dim); head_dim = 32 / 4 here.
  CHECK(tensors.at("model.layers.1.self_attn.q_norm.weight") == std::vector<std::int64_t>{8});
  CHECK(tensors.at("model.layers.1.self_attn.k_norm.weight") == std::vector<std::int64_t>{8});
  CHECK_FALSE(tensors.contains("model.layers.1.self_attn.q_proj.bias"));
  CHECK(tensors.size() == 3 + 2 * (2 + 4 + 2 + 3));  // embed, norm, lm_head (untied); per layer: 2 norms, 4 projections, q/k norm, MLP
}
