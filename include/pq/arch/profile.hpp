// pq/arch/profile.hpp: the architecture profile of a checkpoint, derived from its description: every
// quantizable Linear with its shape, and the decision units vLLM fuses (one format and one NVFP4 global
// scale per unit). Linears of role `unquantized` (routers, shared_expert_gate, lm_head) stay BF16 and go
// to the ignore list.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <pq/arch/registry.hpp>

namespace pq::arch {

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
  // What the export's targets need, from the description: the module path within the layer (the fused
  // module, e.g. self_attn.qkv_proj, or the block of a whole-block unit, e.g. mlp.experts) and whether
  // its members sit in per-expert copies (`<module>.<e>.<leaf>`).
  std::string module;
  bool per_expert = false;
};

struct profile {
  model_config config;
  std::vector<linear_info> linears;
  std::vector<decision_unit> units;
  std::vector<std::string> unquantized_linears;  // lm_head, router and shared-expert gates

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

namespace detail {
// Appends layer `l`'s Linears, units and full-precision Linears (a decoder layer, or an MTP layer numbered after them).
inline void append_layer(profile& p, const forward_config& f, int l) {
  const auto unit = [&](std::string module, int layer, bool per_expert) {
    const std::string pre = layer_prefix(f, layer) + ".";
    p.units.push_back({pre + module, {}, layer, std::move(module), per_expert});
    return static_cast<int>(p.units.size() - 1);
  };
  std::map<const block_spec*, int> whole;  // the unit of a whole-block block
  std::map<std::string, int> fused;        // module within the layer -> unit, per block copy
  for_each_layer_tensor(f, l, [&](const tensor_entry& e) {
    if (e.spec->what == role::unquantized) p.unquantized_linears.push_back(e.module);
    if (e.spec->what != role::linear) return;
    const block_spec& b = *e.block;
    const std::string block = b.path.empty() ? "" : std::string(b.path) + ".";
    int u;
    if (b.grouping == units::whole_block) {
      const auto it = whole.find(&b);
      u = it != whole.end() ? it->second : whole[&b] = unit(std::string(b.path), l, b.per_expert);
    } else {
      const std::string copy = e.expert < 0 ? "" : std::to_string(e.expert) + ".";
      const std::string module = block + copy + std::string(e.spec->fused.empty() ? e.spec->name : e.spec->fused);
      const auto it = fused.find(module);
      u = it != fused.end() ? it->second : fused[module] = unit(module, l, false);
    }
    p.units[static_cast<std::size_t>(u)].members.push_back(static_cast<int>(p.linears.size()));
    p.linears.push_back({e.module, e.shape[0], e.shape[1], l, u, e.expert});
  });
}
}  // namespace detail

// The main model's profile: the decoder layers (an MTP head is not in it: make_mtp_profile).
inline profile make_profile(const model_config& c) {
  profile p;
  p.config = c;
  const forward_config& f = c.shape;
  const description& d = architecture_of(f);
  for (int l = 0; l < f.layers; ++l) detail::append_layer(p, f, l);
  // Model-wide Linears that stay in full precision are listed whether or not the checkpoint stores them.
  for (const tensor_spec& t : d.globals)
    if (t.what == role::unquantized) p.unquantized_linears.push_back(std::string(t.name));
  return p;
}

// The MTP head's Linears and decision units as vLLM's draft fuses them (mtp.fc its own unit, at the first MTP layer's
// index; each MTP layer's units as a decoder layer of its kind), kept apart from make_profile's so nothing of the main
// pipeline takes them before it can measure them on the MTP loss and export them under the draft's names. Empty when
// the model has no MTP head.
inline profile make_mtp_profile(const model_config& c) {
  profile p;
  p.config = c;
  const forward_config& f = c.shape;
  if (mtp_layer_count(f) == 0) return p;
  for (const tensor_spec& t : architecture_of(f).mtp->tensors) {
    if (t.what != role::linear || !detail::holds(t.when, f)) continue;
    const std::string name(t.name);
    p.units.push_back({name, {static_cast<int>(p.linears.size())}, f.layers, name, false});
    p.linears.push_back({name, t.rows(f), t.cols(f), f.layers, static_cast<int>(p.units.size() - 1), -1});
  }
  for (int m = 0; m < mtp_layer_count(f); ++m) detail::append_layer(p, f, f.layers + m);
  return p;
}

}  // namespace pq::arch
