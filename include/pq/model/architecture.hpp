// pq/model/architecture.hpp: the architecture profile of a checkpoint: every quantizable Linear with its
// shape, and the decision units vLLM fuses (one format and one NVFP4 global scale per unit): q/k/v, gate/up,
// and in an MoE layer every expert's gate/up/down together. Router gates, shared_expert_gate, embeddings
// and lm_head are not quantizable Linears here (they stay BF16 and go to the ignore list).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <pq/model/config.hpp>

namespace pq::model {

struct linear_info {
  std::string name;  // HF module path, e.g. model.layers.3.self_attn.q_proj (tensor: name + ".weight")
  std::int64_t rows = 0, cols = 0;  // [out_features, in_features]
  int layer = 0;
  int unit = 0;     // index into profile::units
  int expert = -1;  // routed expert index, -1 otherwise
  std::int64_t params() const { return rows * cols; }
};

struct decision_unit {
  std::string name;          // e.g. model.layers.3.self_attn.qkv_proj
  std::vector<int> members;  // indices into profile::linears
  int layer = 0;
};

struct profile {
  model_config config;
  std::vector<linear_info> linears;
  std::vector<decision_unit> units;
  std::vector<std::string> unquantized_linears;  // lm_head (when present), router and shared-expert gates

  std::int64_t quantizable_params() const {
    std::int64_t n = 0;
    for (const auto& l : linears) n += l.params();
    return n;
  }
  const linear_info* find(const std::string& name) const {
    for (const auto& l : linears)
      if (l.name == name) return &l;
    return nullptr;
  }
};

inline profile make_profile(const model_config& c) {
  profile p;
  p.config = c;
  const forward_config& f = c.shape;
  const auto unit = [&](std::string name, int layer) {
    p.units.push_back({std::move(name), {}, layer});
    return static_cast<int>(p.units.size() - 1);
  };
  const auto add = [&](int u, std::string name, std::int64_t rows, std::int64_t cols, int layer, int expert = -1) {
    p.units[static_cast<std::size_t>(u)].members.push_back(static_cast<int>(p.linears.size()));
    p.linears.push_back({std::move(name), rows, cols, layer, u, expert});
  };
  const std::int64_t q = f.heads * f.head_dim, kv = f.kv_heads * f.head_dim;
  for (int l = 0; l < f.layers; ++l) {
    const std::string pre = "model.layers." + std::to_string(l) + ".";
    int u = unit(pre + "self_attn.qkv_proj", l);
    add(u, pre + "self_attn.q_proj", q, f.hidden, l);
    add(u, pre + "self_attn.k_proj", kv, f.hidden, l);
    add(u, pre + "self_attn.v_proj", kv, f.hidden, l);
    add(unit(pre + "self_attn.o_proj", l), pre + "self_attn.o_proj", f.hidden, q, l);
    const auto mlp = [&](const std::string& m, std::int64_t inter) {
      const int gu = unit(m + "gate_up_proj", l);
      add(gu, m + "gate_proj", inter, f.hidden, l);
      add(gu, m + "up_proj", inter, f.hidden, l);
      add(unit(m + "down_proj", l), m + "down_proj", f.hidden, inter, l);
    };
    if (f.is_moe_layer(l)) {
      const int ex = unit(pre + "mlp.experts", l);
      for (int e = 0; e < f.moe.num_experts; ++e) {
        const std::string m = pre + "mlp.experts." + std::to_string(e) + ".";
        add(ex, m + "gate_proj", f.moe.expert_intermediate, f.hidden, l, e);
        add(ex, m + "up_proj", f.moe.expert_intermediate, f.hidden, l, e);
        add(ex, m + "down_proj", f.hidden, f.moe.expert_intermediate, l, e);
      }
      p.unquantized_linears.push_back(pre + "mlp.gate");
      if (f.moe.shared_expert_intermediate > 0) {
        mlp(pre + "mlp.shared_expert.", f.moe.shared_expert_intermediate);
        p.unquantized_linears.push_back(pre + "mlp.shared_expert_gate");
      }
    } else {
      mlp(pre + "mlp.", f.intermediate);
    }
  }
  p.unquantized_linears.push_back("lm_head");
  return p;
}

}  // namespace pq::model
