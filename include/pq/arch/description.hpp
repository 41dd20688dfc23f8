// pq/arch/description.hpp: the description of an architecture, one table per layer kind: which tensors a
// layer has (names as the checkpoint spells them, shapes from config.json), which of them are Linears pq
// may quantize, how vLLM fuses those into decision units, and what stays in full precision. The loader,
// the profile, the expected-tensor check, the export's targets and `pq synth` all enumerate these tables
// (for_each_tensor below); nothing else spells a Hugging Face tensor name. docs/arch.md: adding a model.
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <pq/arch/config.hpp>

namespace pq::arch {

// A dimension or a presence condition, as a function of the parsed config.
using extent = std::int64_t (*)(const forward_config&);
using condition = bool (*)(const forward_config&);

// What quantization does with a tensor.
enum class role : std::uint8_t {
  linear,       // a quantizable Linear: `<name>.weight` [rows, cols] (+ `<name>.bias` [rows] when `bias` holds)
  unquantized,  // a Linear that always stays in full precision (router, shared-expert gate, lm_head):
                // named in the export's ignore list
  norm,         // an RMSNorm gain [rows]
  embedding,    // the token embedding [vocab, hidden]
  parameter,    // another tensor the math reads and quantization never touches (conv1d, A_log, dt_bias): kept as
                // stored, not a Linear, so not in the ignore list
};

// Where the forward math takes a tensor from (within its block's part, below).
enum class slot : std::uint8_t {
  embed, final_norm, lm_head,  // model-wide
  input_norm, post_norm,       // the layer's two RMSNorms
  q, k, v, o, q_norm, k_norm,  // attention
  gate, up, down,              // a SwiGLU MLP: dense, each routed expert, the shared expert
  router, shared_gate,         // MoE routing and the shared expert's sigmoid gate
  qkv, z, b, a, out,           // a gated DeltaNet: in_proj_qkv (or in_proj_qkvz), in_proj_z, in_proj_b (or in_proj_ba),
                               // in_proj_a, out_proj
  conv, a_log, dt_bias, gated_norm,  // its depthwise causal conv1d [C, 1, K], decay parameters, per-head gated RMSNorm
  mtp_fc, mtp_embed_norm, mtp_hidden_norm, mtp_norm,  // an MTP head's (mtp_spec): fc [H, 2H], its two pre-fc RMSNorms and
                                                      // its final RMSNorm
};

// Which part of a layer a block's tensors belong to.
enum class part : std::uint8_t { layer, attention, mlp, moe, experts, shared_expert, deltanet };

struct tensor_spec {
  std::string_view name;      // module path within its block; the tensor is `<name>.weight`
  slot to;
  role what;
  extent rows;
  extent cols = nullptr;      // nullptr: a 1-D tensor [rows]
  condition when = nullptr;   // present only when this holds (nullptr: always)
  condition bias = nullptr;   // a Linear that also has `<name>.bias` [rows] when this holds
  std::string_view fused{};   // a Linear: the module vLLM fuses it into with the siblings of its block that
                              // name the same one (q/k/v -> qkv_proj); they share one input. Empty: alone.
  extent depth = nullptr;     // a third dimension (conv1d [C, 1, K]); nullptr: at most 2-D
  bool bare = false;          // the tensor is `<name>` itself (A_log, dt_bias), not `<name>.weight`
};

// How the Linears of a block form decision units (one format, one NVFP4 global scale each).
enum class units : std::uint8_t {
  by_fused,     // one unit per fused module (a Linear alone is its own unit), per copy of the block
  whole_block,  // every Linear of every copy is one unit named after the block (vLLM's FusedMoE experts)
};

struct block_spec {
  std::string_view path;  // module path within the layer ("self_attn", "mlp.experts"); "": the layer itself
  part of;
  std::span<const tensor_spec> tensors;
  condition when = nullptr;
  bool per_expert = false;  // one copy per routed expert, at `<path>.<e>`
  units grouping = units::by_fused;
};

// The forward math of a layer kind (pq/model/detail/layer.hpp implements each).
enum class mixer : std::uint8_t {
  attention,  // softmax attention (GQA; optional q/k norm, partial rotary, output gate: forward_config)
  deltanet,   // the gated delta rule (Qwen3-Next, Qwen3.5)
};
enum class feed_forward : std::uint8_t { mlp, moe };

struct layer_kind {
  std::string_view name;
  mixer mix;
  feed_forward ffn;
  std::span<const block_spec> blocks;
};

// A multi-token-prediction head (Qwen3.5's `mtp.*`, which vLLM runs as its speculative-decoding draft,
// vllm/model_executor/models/qwen3_5_mtp.py): row t takes the main model's output h_t (after its final norm) and the
// embedding of token t+1 (the main model's table), x_t = fc(concat[embed_norm(e), hidden_norm(h_t)]), runs one decoder
// layer of the description's kind `kind` over the rows causally (positions t), then `norm` and the main lm_head:
// logits of token t+2. MTP layer m is `<layers>.<m>`; the walk numbers it config.layers + m (vLLM's mtp_start_layer_idx),
// so every per-layer consumer (loader, linears_of, hooks) takes it as it takes a decoder layer.
struct mtp_spec {
  std::span<const tensor_spec> tensors;  // its own model-wide tensors, full module paths (fc, the norms)
  std::string_view layers;               // "mtp.layers"
  int kind;                              // index into the description's kinds: every MTP layer's
};

struct description {
  std::string_view name;
  std::span<const std::string_view> model_types;  // config.json "model_type" values it reads
  // Reads the family's own fields (biases, q/k norm, MoE routing) after the common ones.
  void (*read_config)(const config_reader&, forward_config&);
  std::string_view layers;                 // path of the layer list: layer i is `<layers>.<i>`
  std::span<const tensor_spec> globals;    // full module paths (embeddings, final norm, lm_head)
  std::span<const layer_kind> kinds;
  int (*kind_of)(const forward_config&, int layer);  // index into kinds
  std::string_view config_section{};  // config.json keeps the decoder's fields in this object ("text_config"); empty: top level
  const mtp_spec* mtp = nullptr;      // the MTP head, when the family has one (layers: forward_config::mtp_layers)
};

// ---- enumeration: the one walk over a description that every consumer uses ----

// One tensor of a checkpoint as the description implies it.
struct tensor_entry {
  std::string module;                 // full module path, e.g. model.layers.3.self_attn.q_proj
  std::vector<std::int64_t> shape;    // of `<module>.weight`
  const tensor_spec* spec = nullptr;
  const block_spec* block = nullptr;  // nullptr: a model-wide tensor
  int layer = -1;
  int expert = -1;                    // the copy of a per-expert block
  bool has_bias = false;              // also `<module>.bias` [shape[0]]
  std::string weight() const { return spec && spec->bare ? module : module + ".weight"; }
  std::string bias() const { return module + ".bias"; }
};

inline const description& architecture_of(const forward_config& c) {
  if (!c.architecture) throw config_error("forward_config: no architecture description set");
  return *c.architecture;
}

inline std::string layer_prefix(const description& d, int layer) {
  return std::string(d.layers) + "." + std::to_string(layer);
}

// The MTP layers the checkpoint's config declares and the description knows (0: none). They are numbered
// [c.layers, c.layers + mtp_layer_count(c)) after the decoder's; every walk over "the layers" (for l < c.layers) stays the
// decoder's.
inline int mtp_layer_count(const forward_config& c) { return architecture_of(c).mtp ? c.mtp_layers : 0; }
inline bool is_mtp_layer(const forward_config& c, int layer) { return layer >= c.layers; }
inline void check_layer(const forward_config& c, int layer) {
  if (layer < 0 || layer >= c.layers + mtp_layer_count(c))
    throw config_error(std::string(architecture_of(c).name) + ": no layer " + std::to_string(layer) + " (" +
                       std::to_string(c.layers) + " decoder layers, " + std::to_string(mtp_layer_count(c)) + " MTP layers)");
}

// The module path of layer `layer`: `<layers>.<i>`, or an MTP layer's `<mtp.layers>.<layer - c.layers>`.
inline std::string layer_prefix(const forward_config& c, int layer) {
  check_layer(c, layer);
  const description& d = architecture_of(c);
  if (!is_mtp_layer(c, layer)) return layer_prefix(d, layer);
  return std::string(d.mtp->layers) + "." + std::to_string(layer - c.layers);
}

inline const layer_kind& kind_of_layer(const forward_config& c, int layer) {
  check_layer(c, layer);
  const description& d = architecture_of(c);
  return d.kinds[static_cast<std::size_t>(is_mtp_layer(c, layer) ? d.mtp->kind : d.kind_of(c, layer))];
}

namespace detail {
inline bool holds(condition f, const forward_config& c) { return f == nullptr || f(c); }
inline tensor_entry entry(const forward_config& c, std::string module, const tensor_spec& t, const block_spec* b,
                          int layer, int expert) {
  tensor_entry e{std::move(module), {t.rows(c)}, &t, b, layer, expert, t.bias != nullptr && t.bias(c)};
  if (t.cols) e.shape.push_back(t.cols(c));
  if (t.depth) e.shape.push_back(t.depth(c));
  return e;
}
}  // namespace detail

// Calls f(block, expert, module_prefix) for every present copy of every present block of layer `layer`,
// in description order; module_prefix ends with '.'.
template <class F>
void for_each_block(const forward_config& c, int layer, F&& f) {
  const std::string pre = layer_prefix(c, layer) + ".";
  for (const block_spec& b : kind_of_layer(c, layer).blocks) {
    if (!detail::holds(b.when, c)) continue;
    const std::string path = b.path.empty() ? pre : pre + std::string(b.path) + ".";
    if (!b.per_expert) {
      f(b, -1, path);
      continue;
    }
    for (int e = 0; e < c.moe.num_experts; ++e) f(b, e, path + std::to_string(e) + ".");
  }
}

// Calls f(entry) for every tensor of layer `layer`, in description order.
template <class F>
void for_each_layer_tensor(const forward_config& c, int layer, F&& f) {
  for_each_block(c, layer, [&](const block_spec& b, int expert, const std::string& path) {
    for (const tensor_spec& t : b.tensors)
      if (detail::holds(t.when, c)) f(detail::entry(c, path + std::string(t.name), t, &b, layer, expert));
  });
}

// Calls f(entry) for every model-wide tensor present.
template <class F>
void for_each_global_tensor(const forward_config& c, F&& f) {
  for (const tensor_spec& t : architecture_of(c).globals)
    if (detail::holds(t.when, c)) f(detail::entry(c, std::string(t.name), t, nullptr, -1, -1));
}

// Every tensor the description implies: model-wide ones, then layer by layer.
template <class F>
void for_each_tensor(const forward_config& c, F&& f) {
  for_each_global_tensor(c, f);
  for (int l = 0; l < c.layers; ++l) for_each_layer_tensor(c, l, f);
}

// Every tensor of the MTP head (none when there is none): its own model-wide ones, then its layers'. Not part of
// for_each_tensor / expected_tensors: the head is optional to everything but the MTP forward (transformers drops mtp.*
// on load, so a checkpoint re-saved by it has none, and the main model's forward, profile and export never read it).
template <class F>
void for_each_mtp_tensor(const forward_config& c, F&& f) {
  if (mtp_layer_count(c) == 0) return;
  for (const tensor_spec& t : architecture_of(c).mtp->tensors)
    if (detail::holds(t.when, c)) f(detail::entry(c, std::string(t.name), t, nullptr, -1, -1));
  for (int m = 0; m < mtp_layer_count(c); ++m) for_each_layer_tensor(c, c.layers + m, f);
}

// The MTP head's model-wide tensor of slot `s` (mtp_fc, the norms).
inline tensor_entry mtp_tensor(const forward_config& c, slot s) {
  if (mtp_layer_count(c) == 0) throw config_error(std::string(architecture_of(c).name) + ": the model has no MTP head");
  for (const tensor_spec& t : architecture_of(c).mtp->tensors)
    if (t.to == s) return detail::entry(c, std::string(t.name), t, nullptr, -1, -1);
  throw config_error(std::string(architecture_of(c).name) + ": the MTP head has no tensor for this slot");
}

// The model-wide tensor the forward reads from `s` (embed, final_norm, lm_head), present or not.
inline tensor_entry global_tensor(const forward_config& c, slot s) {
  for (const tensor_spec& t : architecture_of(c).globals)
    if (t.to == s) return detail::entry(c, std::string(t.name), t, nullptr, -1, -1);
  throw config_error(std::string(architecture_of(c).name) + ": the description has no model-wide tensor for this slot");
}

namespace detail {
template <class Walk>
std::vector<std::pair<std::string, std::vector<std::int64_t>>> names_and_shapes(Walk&& walk) {
  std::vector<std::pair<std::string, std::vector<std::int64_t>>> out;
  walk([&](const tensor_entry& e) {
    out.push_back({e.weight(), e.shape});
    if (e.has_bias) out.push_back({e.bias(), {e.shape[0]}});
  });
  return out;
}
}  // namespace detail

// Every tensor name with its shape, weights and biases alike (what check_checkpoint compares): the main model's.
inline std::vector<std::pair<std::string, std::vector<std::int64_t>>> expected_tensors(const forward_config& c) {
  return detail::names_and_shapes([&](auto&& f) { for_each_tensor(c, f); });
}
// The MTP head's, likewise (what the MTP forward checks; empty when there is no head).
inline std::vector<std::pair<std::string, std::vector<std::int64_t>>> expected_mtp_tensors(const forward_config& c) {
  return detail::names_and_shapes([&](auto&& f) { for_each_mtp_tensor(c, f); });
}

// The quantizable Linears of layer `layer` (module paths), in forward order.
inline std::vector<std::string> linear_names(const forward_config& c, int layer) {
  std::vector<std::string> out;
  for_each_layer_tensor(c, layer, [&](const tensor_entry& e) {
    if (e.spec->what == role::linear) out.push_back(e.module);
  });
  return out;
}

}  // namespace pq::arch
