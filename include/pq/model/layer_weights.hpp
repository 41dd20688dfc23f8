// pq/model/layer_weights.hpp: one decoder layer's fp32 weights, loaded as the architecture description
// lists them (names and shapes) and checked against the config.
#pragma once
#include <pq/arch/llama.hpp>
#include <pq/model/forward_config.hpp>
#include <pq/model/tensor.hpp>
#include <pq/model/weights.hpp>

#include <concepts>
#include <map>
#include <optional>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

namespace pq::model {

struct linear {
  std::string name;  // HF module name, e.g. model.layers.3.self_attn.q_proj
  matrix weight;     // [out, in]
  vector bias;       // empty when the Linear has none
  Eigen::Index in() const { return weight.cols(); }
  Eigen::Index out() const { return weight.rows(); }
};

struct attention_weights {
  linear q, k, v, o;
  vector q_norm, k_norm;  // qwen3 only, [head_dim]
};

struct mlp_weights {
  linear gate, up, down;
};

struct moe_weights {
  matrix router;  // [experts, hidden]; mlp.gate, kept in full precision
  std::vector<mlp_weights> experts;
  std::optional<mlp_weights> shared;
  row_vector shared_gate;  // [hidden], the sigmoid gate of the shared expert
};

// A gated DeltaNet (Qwen3.5: qkv, z, b, a separate; Qwen3-Next: qkv holds in_proj_qkvz and b in_proj_ba, interleaved
// per key head, and z, a stay empty).
struct deltanet_weights {
  linear qkv, z, b, a, out;
  matrix conv;           // [channels, kernel], the depthwise causal conv1d
  vector a_log, dt_bias; // [value_heads]
  vector norm;           // [value_dim], the gated RMSNorm (plain gain)
  bool interleaved() const { return z.weight.size() == 0; }
};

struct layer_weights {
  int index = 0;
  arch::mixer mix = arch::mixer::attention;
  vector input_norm, post_norm;
  attention_weights attn;
  deltanet_weights delta;  // mix == deltanet
  std::variant<mlp_weights, moe_weights> mlp;
};

// The module path of layer `i` of the Llama lineage (every family pq reads today); code that knows its
// forward_config uses arch::layer_prefix(description, i).
inline std::string layer_prefix(int layer) { return arch::layer_prefix(arch::llama, layer); }

namespace detail {
// The fp32 slot of a layer that the forward math reads description slot `s` of block part `of` from (as const as
// the layer; a non-const layer gains its shared expert on first use, as the loader fills it).
template <class LW>
  requires std::same_as<std::remove_const_t<LW>, layer_weights>
auto& linear_slot(LW& w, arch::part of, arch::slot s, int expert) {
  using arch::slot;
  using M = std::conditional_t<std::is_const_v<LW>, const mlp_weights, mlp_weights>;
  using E = std::conditional_t<std::is_const_v<LW>, const moe_weights, moe_weights>;
  if (of == arch::part::attention) {
    switch (s) {
      case slot::q: return w.attn.q;
      case slot::k: return w.attn.k;
      case slot::v: return w.attn.v;
      case slot::o: return w.attn.o;
      default: break;
    }
  } else if (of == arch::part::deltanet) {
    switch (s) {
      case slot::qkv: return w.delta.qkv;
      case slot::z: return w.delta.z;
      case slot::b: return w.delta.b;
      case slot::a: return w.delta.a;
      case slot::out: return w.delta.out;
      default: break;
    }
  } else {
    M* m = nullptr;
    if (of == arch::part::mlp) m = &std::get<mlp_weights>(w.mlp);
    if (of == arch::part::experts) m = &std::get<moe_weights>(w.mlp).experts.at(static_cast<std::size_t>(expert));
    if (of == arch::part::shared_expert) {
      auto& shared = static_cast<E&>(std::get<moe_weights>(w.mlp)).shared;
      if constexpr (std::is_const_v<LW>) {
        if (!shared) throw model_error("layer " + std::to_string(w.index) + ": no shared expert loaded");
        m = &*shared;
      } else {
        m = shared ? &*shared : &shared.emplace();
      }
    }
    if (m && s == slot::gate) return m->gate;
    if (m && s == slot::up) return m->up;
    if (m && s == slot::down) return m->down;
  }
  throw model_error("layer " + std::to_string(w.index) + ": the architecture description puts a Linear where the forward has none");
}
}  // namespace detail

// Loads layer `i` as its architecture description lists it; throws model_error naming the tensor when one
// is missing or misshapen.
inline layer_weights load_layer(const weight_provider& p, const forward_config& c, int i) {
  layer_weights w;
  w.index = i;
  w.mix = arch::kind_of_layer(c, i).mix;
  // (1 + w) RMSNorms (Qwen3-Next lineage) are held as the gain the math multiplies by.
  const auto norm = [&](const arch::tensor_entry& e) {
    vector g = load_vector(p, e.weight(), e.shape[0]);
    if (c.norm_plus_one) g.array() += 1.0f;
    return g;
  };
  if (arch::kind_of_layer(c, i).ffn == arch::feed_forward::moe) {
    moe_weights m;
    m.experts.resize(static_cast<std::size_t>(c.moe.num_experts));
    w.mlp = std::move(m);
  }
  arch::for_each_layer_tensor(c, i, [&](const arch::tensor_entry& e) {
    using arch::slot;
    const std::int64_t rows = e.shape[0];
    if (e.spec->what == arch::role::linear) {
      linear& l = detail::linear_slot(w, e.block->of, e.spec->to, e.expert);
      l.name = e.module;
      l.weight = load_matrix(p, e.weight(), rows, e.shape[1]);
      if (e.has_bias) l.bias = load_vector(p, e.bias(), rows);
      return;
    }
    switch (e.spec->to) {
      case slot::input_norm: w.input_norm = norm(e); return;
      case slot::post_norm: w.post_norm = norm(e); return;
      case slot::q_norm: w.attn.q_norm = norm(e); return;
      case slot::k_norm: w.attn.k_norm = norm(e); return;
      case slot::gated_norm: w.delta.norm = load_vector(p, e.weight(), rows); return;
      case slot::a_log: w.delta.a_log = load_vector(p, e.weight(), rows); return;
      case slot::dt_bias: w.delta.dt_bias = load_vector(p, e.weight(), rows); return;
      case slot::conv: {
        dense_tensor t = detail::load_checked(p, e.weight(), e.shape);
        w.delta.conv = Eigen::Map<const matrix>(t.data.data(), rows, e.shape[2]);
        return;
      }
      case slot::router: std::get<moe_weights>(w.mlp).router = load_matrix(p, e.weight(), rows, e.shape[1]); return;
      case slot::shared_gate:
        std::get<moe_weights>(w.mlp).shared_gate = load_matrix(p, e.weight(), rows, e.shape[1]).row(0);
        return;
      default: throw model_error(e.module + ": the architecture description puts a tensor where the forward has none");
    }
  });
  return w;
}

// Every Linear of loaded layer `w` by module name, bound as load_layer binds them (pointers as const as the layer).
template <class LW>
  requires std::same_as<std::remove_const_t<LW>, layer_weights>
auto linears_of(LW& w, const forward_config& c) {
  std::map<std::string, std::remove_reference_t<decltype(detail::linear_slot(w, {}, {}, 0))>*> out;
  arch::for_each_layer_tensor(c, w.index, [&](const arch::tensor_entry& e) {
    if (e.spec->what == arch::role::linear) out[e.module] = &detail::linear_slot(w, e.block->of, e.spec->to, e.expert);
  });
  return out;
}

// Every quantizable Linear of layer `i`, in forward order (the router and the shared-expert
// gate are not among them: they stay in full precision).
using arch::linear_names;

}  // namespace pq::model
