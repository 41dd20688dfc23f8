// pq/pipeline/synth.hpp: seeded synthetic checkpoints shaped like real LLMs (Llama or Qwen2-MoE), with
// the statistics that make quantization hard: heavy-tailed weights (Student-t) and a few outlier hidden
// channels (large RMSNorm gains, hence large activations on the same input channels of every Linear).
// Tensors are produced one at a time, so a checkpoint of any size streams to disk.
#pragma once
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <pq/pipeline/error.hpp>
#include <pq/arch/registry.hpp>
#include <pq/io/atomic_file.hpp>
#include <pq/io/export.hpp>
#include <pq/io/safetensors.hpp>

#include <pq/core/bf16.hpp>
#include <pq/core/hash.hpp>
#include <pq/config.hpp>

namespace pq::pipeline {

enum class synth_arch { llama, qwen2_moe };

struct synth_options {
  synth_arch arch = synth_arch::llama;
  int hidden_size = 256;
  int intermediate_size = 768;
  int num_layers = 4;
  int num_heads = 4;
  int num_kv_heads = 2;
  int head_dim = 64;
  int vocab_size = 4096;
  int num_experts = 8;              // qwen2_moe
  int experts_per_token = 2;        // qwen2_moe
  int moe_intermediate_size = 256;  // qwen2_moe
  int shared_expert_intermediate_size = 512;
  double tail_dof = 5.0;             // Student-t degrees of freedom of the weights
  double outlier_channel_fraction = 0.01;
  double outlier_gain = 12.0;
  std::uint64_t seed = 0;
};

// Shapes of well-known sizes: "tiny" (seconds on a laptop), "1b", "8b" (Llama-3-8B), "moe-tiny".
inline synth_options synth_preset(const std::string& name) {
  synth_options o;
  if (name == "tiny") return o;
  if (name == "moe-tiny") {
    o.arch = synth_arch::qwen2_moe;
    return o;
  }
  if (name == "1b") {
    o.hidden_size = 2048; o.intermediate_size = 8192; o.num_layers = 16; o.num_heads = 32;
    o.num_kv_heads = 8; o.head_dim = 64; o.vocab_size = 32000;
    return o;
  }
  if (name == "8b") {
    o.hidden_size = 4096; o.intermediate_size = 14336; o.num_layers = 32; o.num_heads = 32;
    o.num_kv_heads = 8; o.head_dim = 128; o.vocab_size = 128256;
    return o;
  }
  throw pipeline_error("unknown synthetic preset '" + name + "' (valid: tiny, moe-tiny, 1b, 8b)");
}

inline nlohmann::json synth_config(const synth_options& o) {
  nlohmann::json c;
  const bool moe = o.arch == synth_arch::qwen2_moe;
  c["architectures"] = {moe ? "Qwen2MoeForCausalLM" : "LlamaForCausalLM"};
  c["model_type"] = moe ? "qwen2_moe" : "llama";
  c["hidden_size"] = o.hidden_size;
  c["intermediate_size"] = o.intermediate_size;
  c["num_hidden_layers"] = o.num_layers;
  c["num_attention_heads"] = o.num_heads;
  c["num_key_value_heads"] = o.num_kv_heads;
  c["head_dim"] = o.head_dim;
  c["vocab_size"] = o.vocab_size;
  c["rms_norm_eps"] = 1e-6;
  c["rope_theta"] = 10000.0;
  c["tie_word_embeddings"] = true;
  c["torch_dtype"] = "bfloat16";
  c["hidden_act"] = "silu";
  c["max_position_embeddings"] = 4096;
  c["bos_token_id"] = 1;  // where self-calibration starts its sequences
  c["eos_token_id"] = 2;
  if (moe) {
    c["num_experts"] = o.num_experts;
    c["num_experts_per_tok"] = o.experts_per_token;
    c["moe_intermediate_size"] = o.moe_intermediate_size;
    c["shared_expert_intermediate_size"] = o.shared_expert_intermediate_size;
    c["norm_topk_prob"] = false;
    c["decoder_sparse_step"] = 1;
    c["mlp_only_layers"] = nlohmann::json::array({0});
    c["qkv_bias"] = true;
  } else {
    c["attention_bias"] = false;
  }
  return c;
}

// One generated tensor: its HF name, shape and bf16 bits.
struct synth_tensor {
  std::string name;
  std::vector<std::int64_t> shape;
  std::vector<std::uint16_t> bf16_bits;
};

namespace detail {
inline std::uint64_t mix(std::uint64_t seed, const std::string& name) {  // FNV-1a over name, started from seed
  return fnv1a{fnv1a::offset_basis ^ seed}.chars(name).value;
}
}  // namespace detail

// What a tensor of the checkpoint is, which decides how its values are drawn.
enum class synth_kind { embedding, linear, bias, norm, norm_with_outliers };
struct synth_entry {
  std::string name;
  std::vector<std::int64_t> shape;
  synth_kind kind;
};

// Every tensor of the checkpoint, as the architecture description of synth_config(o) lists them, without
// any data. Norm gains of the residual stream carry the outlier channels.
inline std::vector<synth_entry> synth_layout(const synth_options& o) {
  const arch::model_config c = arch::parse_config(synth_config(o), "synthetic config.json");
  std::vector<synth_entry> out;
  const auto add = [&](const arch::tensor_entry& e) {
    using arch::role;
    const bool residual_norm = e.spec->to == arch::slot::input_norm || e.spec->to == arch::slot::post_norm;
    const synth_kind kind = e.spec->what == role::embedding ? synth_kind::embedding
                          : e.spec->what == role::norm      ? (residual_norm ? synth_kind::norm_with_outliers : synth_kind::norm)
                                                            : synth_kind::linear;
    out.push_back({e.weight(), e.shape, kind});
    if (e.has_bias) out.push_back({e.bias(), {e.shape[0]}, synth_kind::bias});
  };
  arch::for_each_tensor(c.shape, add);
  return out;
}

// The values of one tensor: they depend only on the seed and the tensor's name.
inline synth_tensor synth_generate(const synth_options& o, const synth_entry& e) {
  synth_tensor t{e.name, e.shape, {}};
  std::int64_t n = 1;
  for (auto d : e.shape) n *= d;
  t.bf16_bits.resize(static_cast<std::size_t>(n));
  std::mt19937_64 rng(detail::mix(o.seed, e.name));
  const auto put = [&](std::size_t i, double v) { t.bf16_bits[i] = static_cast<std::uint16_t>(bf16::encode(static_cast<float>(v))); };
  switch (e.kind) {
    case synth_kind::embedding: {  // tied: logits = rmsnorm(h) . E, std ~ sqrt(hidden) * 0.15, a few nats of spread
      std::normal_distribution<double> nd(0.0, 0.15);
      for (std::size_t i = 0; i < t.bf16_bits.size(); ++i) put(i, nd(rng));
      break;
    }
    case synth_kind::linear: {  // Student-t entries with std ~ 1/sqrt(in)
      std::student_t_distribution<double> st(o.tail_dof);
      const double s = std::sqrt((o.tail_dof - 2.0) / o.tail_dof) / std::sqrt(static_cast<double>(e.shape[1]));
      for (std::size_t i = 0; i < t.bf16_bits.size(); ++i) put(i, st(rng) * s);
      break;
    }
    case synth_kind::bias: {
      std::normal_distribution<double> nd(0.0, 0.02);
      for (std::size_t i = 0; i < t.bf16_bits.size(); ++i) put(i, nd(rng));
      break;
    }
    case synth_kind::norm:
    case synth_kind::norm_with_outliers: {  // gains near 1; the same few outlier channels in every layer
      std::vector<bool> outlier(t.bf16_bits.size(), false);
      if (e.kind == synth_kind::norm_with_outliers) {
        std::mt19937_64 orng(detail::mix(o.seed, "outlier-channels"));
        const int k = std::max(1, static_cast<int>(o.outlier_channel_fraction * static_cast<double>(outlier.size())));
        for (int i = 0; i < k; ++i) outlier[orng() % outlier.size()] = true;
      }
      std::normal_distribution<double> nd(1.0, 0.1);
      for (std::size_t i = 0; i < t.bf16_bits.size(); ++i) put(i, nd(rng) * (outlier[i] ? o.outlier_gain : 1.0));
      break;
    }
  }
  return t;
}

// Calls emit(tensor) for every tensor of the checkpoint, one at a time.
inline void synth_tensors(const synth_options& o, const std::function<void(const synth_tensor&)>& emit) {
  for (const auto& e : synth_layout(o)) emit(synth_generate(o, e));
}

// Token windows for calibration and evaluation of a synthetic model: Zipf-distributed ids (natural
// text's frequency law), seeded; calibration and evaluation use different streams.
inline std::vector<std::int32_t> synth_tokens(const synth_options& o, int windows, int seq_len, bool eval) {
  std::mt19937_64 rng(detail::mix(o.seed, eval ? "eval-tokens" : "calib-tokens"));
  std::vector<double> weights(static_cast<std::size_t>(o.vocab_size));
  for (std::size_t i = 0; i < weights.size(); ++i) weights[i] = 1.0 / static_cast<double>(i + 10);
  std::discrete_distribution<std::int32_t> zipf(weights.begin(), weights.end());
  std::vector<std::int32_t> ids(static_cast<std::size_t>(windows) * seq_len);
  for (auto& id : ids) id = zipf(rng);
  return ids;
}

// Writes a synthetic checkpoint directory: config.json, the weights (declared, then streamed tensor by
// tensor into shards of at most max_shard_bytes) and tokens.safetensors with "calib" and "eval" windows.
// The directory appears only when complete.
struct synth_files {
  int calib_windows = 32, eval_windows = 16, seq_len = 256;
  std::uint64_t max_shard_bytes = 2ull << 30;
  bool force = false;
};
inline void write_synthetic_checkpoint(const synth_options& o, const std::filesystem::path& out, const synth_files& f = {}) {
  namespace fs = std::filesystem;
  io::check_output_dir(out, fs::path(), f.force);
  io::write_atomically(out, [&](const fs::path& tmp) {
    fs::create_directories(tmp);
    std::vector<io::tensor_decl> decls;
    const auto layout = synth_layout(o);
    for (const auto& e : layout) decls.push_back({e.name, dtype::BF16, e.shape});
    io::checkpoint_writer w(tmp, decls, f.max_shard_bytes);
    for (const auto& e : layout) {
      const synth_tensor t = synth_generate(o, e);
      w.write(t.name, std::as_bytes(std::span(t.bf16_bits)));
    }
    w.finish();
    std::ofstream(tmp / "config.json") << synth_config(o).dump(2) << "\n";
    const auto calib = synth_tokens(o, f.calib_windows, f.seq_len, false);
    const auto eval = synth_tokens(o, f.eval_windows, f.seq_len, true);
    io::safetensors_writer tw(tmp / "tokens.safetensors", {{"calib", dtype::I32, {f.calib_windows, f.seq_len}},
                                                           {"eval", dtype::I32, {f.eval_windows, f.seq_len}}});
    tw.write("calib", std::as_bytes(std::span(calib)));
    tw.write("eval", std::as_bytes(std::span(eval)));
    tw.close();
  }, /*replace_directory=*/f.force);
}

}  // namespace pq::pipeline
