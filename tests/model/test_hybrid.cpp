// The hybrid decoders (gated DeltaNet + gated attention + MoE): the tiny trained Qwen3.5-MoE and Qwen3-Next
// checkpoints of tests/models (made by tests/models/make_hybrid_models.py with transformers) against their
// descriptions, their reference logits and eval NLL, the incremental decoder against the forward, and the
// per-expert layout, and Qwen3.5's MTP head against tests/models/mtp_reference.py. Qwen3-Next stores the DeltaNet projections fused and interleaved per key head (in_proj_qkvz,
// in_proj_ba), so its reference logits test the forward's de-interleaving.
#include <pq/arch/profile.hpp>
#include <pq/model/decoder.hpp>
#include <pq/model/forward.hpp>
#include <pq/model/mtp.hpp>
#include <pq/model/source_model.hpp>

#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <set>
#include <utility>
#include <vector>

using namespace pq::model;

namespace {
std::filesystem::path hybrid_model_dir(const char* name) {
  return std::filesystem::path(PQ_SOURCE_DIR) / "tests" / "models" / name;
}

// Rows 0..15 of eval[0] and eval[1].
token_batch hybrid_prefix(const std::filesystem::path& dir, std::int64_t vocab, Eigen::Index len) {
  const token_batch eval = load_tokens(dir / "tokens.safetensors", "eval", vocab);
  token_batch prefix{2, len, {}};
  for (Eigen::Index s = 0; s < 2; ++s)
    for (Eigen::Index p = 0; p < len; ++p) prefix.ids.push_back(eval.at(s, p));
  return prefix;
}

double hybrid_logit_diff(const std::filesystem::path& dir, const weight_provider& w, const forward_config& c) {
  const auto file = pq::io::safetensors_file::open(dir / "tokens.safetensors");
  const auto& ref_view = file.at("ref_logits");
  REQUIRE(ref_view.shape == std::vector<std::int64_t>{2, 16, c.vocab});
  const std::vector<float> ref = pq::io::to_float(ref_view);
  const runner r(w, c);
  const matrix logits = r.logits(hybrid_prefix(dir, c.vocab, 16));
  const Eigen::Map<const matrix> expected(ref.data(), 32, c.vocab);
  return (logits - expected).cwiseAbs().maxCoeff();
}

// The reference NLLs are stored per eval window (ref_window_nll, mtp_ref_window_nll: tests/models/
// window_nll_reference.py, mtp_reference.py), so the forward runs on the first kWindows of the 64 (the whole split
// costs minutes under the sanitizers) and each window is checked on its own, which is stricter than their mean.
constexpr Eigen::Index kWindows = 8;

// The file's per-window references: their mean is the split's NLL `total` (checks that the stored reference is one).
std::vector<float> window_reference(const pq::io::safetensors_file& file, const char* windows, const char* total) {
  const std::vector<float> w = pq::io::to_float(file.at(windows));
  REQUIRE(w.size() == 64);
  double mean = 0;
  for (const float x : w) mean += x / 64.0;
  const double ref = pq::io::to_float(file.at(total))[0];
  CHECK(std::abs(mean - ref) < 1e-5 * ref);
  return w;
}

// Mean NLL of token p + shift over positions p of logits' rows (the row of p predicts token p + shift of window s).
double window_nll(const matrix& logits, const token_batch& t, Eigen::Index s, Eigen::Index shift) {
  double sum = 0;
  for (Eigen::Index p = 0; p < logits.rows(); ++p) {
    const auto row = logits.row(p);
    const float m = row.maxCoeff();
    sum += m + std::log((row.array() - m).exp().sum()) - row(t.at(s, p + shift));
  }
  return sum / static_cast<double>(logits.rows());
}

// Each of the first kWindows eval windows: the mean NLL of positions 0..510 within 0.1% of ref_window_nll.
void check_window_nll(const std::filesystem::path& dir) {
  const source_model model(dir);
  const forward_config& c = model.shape();
  const token_batch eval = load_tokens(dir / "tokens.safetensors", "eval", c.vocab).first(kWindows);
  REQUIRE(eval.sequences == kWindows);
  const auto file = pq::io::safetensors_file::open(dir / "tokens.safetensors");
  const std::vector<float> ref = window_reference(file, "ref_window_nll", "ref_nll");
  const runner r(model.weights(), c);
  matrix h = r.embed(eval);
  r.run_layers(h, eval.length);
  const head_weights head = r.load_head();
  for (Eigen::Index s = 0; s < eval.sequences; ++s) {
    const double nll = window_nll(runner::logits(head, h.middleRows(s * eval.length, eval.length - 1), c.rms_eps), eval, s, 1);
    MESSAGE(dir.filename().string() << ": eval window " << s << " NLL " << nll << " (reference " << ref[s] << ")");
    CHECK(std::abs(nll - ref[s]) < 1e-3 * ref[s]);
  }
}

// Steps the incremental decoder through 12 tokens of eval[0] and eval[1]: max |step logits - forward logits|; then
// checks that reset() starts both sequences afresh.
double hybrid_decoder_diff(const std::filesystem::path& dir) {
  const source_model model(dir);
  const forward_config& c = model.shape();
  const Eigen::Index len = 12;
  const token_batch prefix = hybrid_prefix(dir, c.vocab, len);
  const runner r(model.weights(), c);
  const matrix full = r.logits(prefix);
  decoder d(r, 2, len);
  double diff = 0;
  for (Eigen::Index p = 0; p < len; ++p) {
    const std::vector<std::int32_t> ids{prefix.at(0, p), prefix.at(1, p)};
    const matrix step = d.step(ids);
    for (Eigen::Index s = 0; s < 2; ++s) diff = std::max(diff, double((step.row(s) - full.row(s * len + p)).cwiseAbs().maxCoeff()));
  }
  d.reset();
  const matrix again = d.step(std::vector<std::int32_t>{prefix.at(0, 0), prefix.at(1, 0)});
  CHECK((again.row(0) - full.row(0)).cwiseAbs().maxCoeff() < 1e-4);
  CHECK((again.row(1) - full.row(len)).cwiseAbs().maxCoeff() < 1e-4);
  return diff;
}
}  // namespace

TEST_CASE("tiny-qwen3_5moe-code: the description implies the stored text tensors (experts packed as released)") {
  const auto dir = hybrid_model_dir("tiny-qwen3_5moe-code");
  const source_model model(dir);  // checks every implied tensor and shape
  const forward_config& c = model.shape();
  CHECK(c.architecture == &pq::arch::qwen3_5_moe);
  CHECK(c.deltanet.is_layer(0));
  CHECK_FALSE(c.deltanet.is_layer(3));
  CHECK(c.rotary() == 8);
  std::set<std::string> implied;
  for (const auto& [n, shape] : expected_tensors(c)) implied.insert(n);
  int packed = 0;
  for (const auto& n : model.dir().tensor_names()) {
    if (n.starts_with("model.visual.") || n.starts_with("mtp.")) continue;  // copied through
    if (n.ends_with(".experts.gate_up_proj") || n.ends_with(".experts.down_proj")) {
      ++packed;
      continue;
    }
    CHECK_MESSAGE(implied.contains(n), n << " is stored but not in the description");
  }
  CHECK(packed == 2 * c.layers);
  const auto p = pq::arch::make_profile(model.config());
  std::vector<std::string> units;
  for (const auto& u : p.units)
    if (u.layer == 0 || u.layer == 3) units.push_back(u.name);
  const std::string l0 = "model.language_model.layers.0.", l3 = "model.language_model.layers.3.";
  CHECK(units == std::vector<std::string>{l0 + "linear_attn.in_proj_qkvz", l0 + "linear_attn.in_proj_ba",
                                          l0 + "linear_attn.out_proj", l0 + "mlp.experts",
                                          l0 + "mlp.shared_expert.gate_up_proj", l0 + "mlp.shared_expert.down_proj",
                                          l3 + "self_attn.qkv_proj", l3 + "self_attn.o_proj", l3 + "mlp.experts",
                                          l3 + "mlp.shared_expert.gate_up_proj", l3 + "mlp.shared_expert.down_proj"});
}

TEST_CASE("tiny-qwen3_5moe-code reproduces ref_logits, packed and per-expert") {
  const auto dir = hybrid_model_dir("tiny-qwen3_5moe-code");
  const source_model model(dir);
  const double diff = hybrid_logit_diff(dir, model.weights(), model.shape());
  MESSAGE("tiny-qwen3_5moe-code: max |logits - ref_logits| = " << diff);
  CHECK(diff < 1e-4);
  // The layout transformers' save_pretrained writes: one module per expert.
  memory_weights split;
  for (const auto& [n, shape] : expected_tensors(model.shape())) split.add(n, model.weights().load(n));
  CHECK(hybrid_logit_diff(dir, split, model.shape()) == doctest::Approx(diff).epsilon(1e-3));
}

TEST_CASE("tiny-qwen3_5moe-code: eval NLL of each of the first eval windows within 0.1% of the reference") {
  check_window_nll(hybrid_model_dir("tiny-qwen3_5moe-code"));
}

TEST_CASE("tiny-qwen3_5moe-code: the incremental decoder (DeltaNet state, KV cache) equals the forward") {
  const double diff = hybrid_decoder_diff(hybrid_model_dir("tiny-qwen3_5moe-code"));
  MESSAGE("tiny-qwen3_5moe-code: decoder vs forward: max |diff| = " << diff);
  CHECK(diff < 1e-4);
}

// ---- Qwen3.5's MTP head (mtp.*): described, loaded and run as vLLM's draft (model/mtp.hpp) ----

TEST_CASE("tiny-qwen3_5moe-code: the MTP description implies exactly the stored mtp.* tensors, outside the main model's") {
  const auto dir = hybrid_model_dir("tiny-qwen3_5moe-code");
  const source_model model(dir);
  const forward_config& c = model.shape();
  REQUIRE(pq::arch::mtp_layer_count(c) == 1);
  CHECK(pq::arch::layer_prefix(c, c.layers) == "mtp.layers.0");
  CHECK(pq::arch::kind_of_layer(c, c.layers).name == "attention_moe");
  CHECK_THROWS_AS(pq::arch::kind_of_layer(c, c.layers + 1), pq::arch::config_error);
  for (const auto& [n, shape] : expected_tensors(c)) CHECK_FALSE(n.starts_with("mtp."));  // optional: not required
  std::map<std::string, std::vector<std::int64_t>> implied;
  for (const auto& [n, shape] : pq::arch::expected_mtp_tensors(c)) CHECK(implied.emplace(n, shape).second);
  CHECK(implied.at("mtp.fc.weight") == std::vector<std::int64_t>{128, 256});
  CHECK(implied.at("mtp.layers.0.self_attn.q_proj.weight") == std::vector<std::int64_t>{256, 128});
  CHECK(implied.at("mtp.layers.0.mlp.experts.7.down_proj.weight") == std::vector<std::int64_t>{128, 64});
  for (const auto& [n, shape] : implied) {  // per-expert names answer from the packed tensors
    REQUIRE_MESSAGE(model.weights().has(n), n << " is implied but not stored");
    CHECK(model.weights().shape_of(n) == shape);
  }
  for (const auto& n : model.dir().tensor_names()) {
    if (!n.starts_with("mtp.")) continue;
    if (n.ends_with(".experts.gate_up_proj") || n.ends_with(".experts.down_proj")) continue;  // packed as released
    CHECK_MESSAGE(implied.contains(n), n << " is stored but not in the MTP description");
  }
  // Its Linears as the loader binds them (the hooks' names); the main model's profile is unchanged (above).
  const layer_weights lw = load_layer(model.weights(), c, mtp_layer_index(c, 0));
  const auto linears = linears_of(lw, c);
  CHECK(linears.size() == 4 + 3 * 8 + 3);
  CHECK(linears.contains("mtp.layers.0.mlp.experts.3.up_proj"));
  CHECK(linear_names(c, c.layers).front() == "mtp.layers.0.self_attn.q_proj");
  // Decision units as vLLM's draft fuses them, in a profile of their own.
  const auto mp = pq::arch::make_mtp_profile(model.config());
  std::vector<std::string> units;
  for (const auto& u : mp.units) {
    units.push_back(u.name);
    CHECK(u.layer == c.layers);
  }
  const std::string m0 = "mtp.layers.0.";
  CHECK(units == std::vector<std::string>{"mtp.fc", m0 + "self_attn.qkv_proj", m0 + "self_attn.o_proj", m0 + "mlp.experts",
                                          m0 + "mlp.shared_expert.gate_up_proj", m0 + "mlp.shared_expert.down_proj"});
  CHECK(mp.linears.size() == 1 + linears.size());
  CHECK(mp.units[3].members.size() == 3 * 8);
  CHECK(mp.unquantized_linears == std::vector<std::string>{m0 + "mlp.gate", m0 + "mlp.shared_expert_gate"});
  for (const auto& u : pq::arch::make_profile(model.config()).units) CHECK_FALSE(u.name.starts_with("mtp."));
}

TEST_CASE("tiny-qwen3next-code: no MTP head described (Qwen3-Next's is not yet)") {
  const source_model model(hybrid_model_dir("tiny-qwen3next-code"));
  CHECK(pq::arch::mtp_layer_count(model.shape()) == 0);
  CHECK(pq::arch::expected_mtp_tensors(model.shape()).empty());
  CHECK(pq::arch::make_mtp_profile(model.config()).units.empty());
  CHECK_THROWS_AS(load_mtp_head(model.weights(), model.shape()), pq::arch::config_error);
}

TEST_CASE("tiny-qwen3_5moe-code: MTP logits equal mtp_ref_logits, MTP NLL of each of the first eval windows within 0.1% of the reference") {
  const auto dir = hybrid_model_dir("tiny-qwen3_5moe-code");
  const source_model model(dir);
  const forward_config& c = model.shape();
  const runner r(model.weights(), c);
  const auto file = pq::io::safetensors_file::open(dir / "tokens.safetensors");
  const auto& ref_view = file.at("mtp_ref_logits");
  REQUIRE(ref_view.shape == std::vector<std::int64_t>{2, 15, c.vocab});
  const std::vector<float> ref = pq::io::to_float(ref_view);
  const matrix logits = mtp_logits(r, hybrid_prefix(dir, c.vocab, 16));  // rows 0..14: h_t and token t+1
  REQUIRE(logits.rows() == 30);
  const double diff = (logits - Eigen::Map<const matrix>(ref.data(), 30, c.vocab)).cwiseAbs().maxCoeff();
  MESSAGE("tiny-qwen3_5moe-code: max |MTP logits - mtp_ref_logits| = " << diff);
  CHECK(diff < 1e-4);

  const token_batch eval = load_tokens(dir / "tokens.safetensors", "eval", c.vocab).first(kWindows);
  REQUIRE(eval.sequences == kWindows);
  const std::vector<float> ref_nll = window_reference(file, "mtp_ref_window_nll", "mtp_ref_nll");
  matrix h = r.embed(eval);
  r.run_layers(h, eval.length);
  const head_weights main = r.load_head();
  const mtp_head head = load_mtp_head(model.weights(), c);
  const matrix y = mtp_hidden(r, main, head, eval, h);
  const Eigen::Index n = eval.length - 1;
  for (Eigen::Index s = 0; s < eval.sequences; ++s) {
    // rows 0..509 of the window (from h_t and token t+1) predict tokens 2..511
    const double nll = window_nll(mtp_logits(main, head, y.middleRows(s * n, n - 1), c.rms_eps), eval, s, 2);
    MESSAGE("tiny-qwen3_5moe-code: eval window " << s << " MTP NLL " << nll << " (mtp_ref_window_nll " << ref_nll[s] << ")");
    CHECK(std::abs(nll - ref_nll[s]) < 1e-3 * ref_nll[s]);
  }
}

// ---- Qwen3-Next: in_proj_qkvz / in_proj_ba fused and interleaved per key head, one module per routed expert ----

TEST_CASE("tiny-qwen3next-code: the description implies exactly the stored tensors") {
  const auto dir = hybrid_model_dir("tiny-qwen3next-code");
  const source_model model(dir);  // checks every implied tensor and shape
  const forward_config& c = model.shape();
  CHECK(c.architecture == &pq::arch::qwen3_next);
  for (int l = 0; l < 3; ++l) CHECK(c.deltanet.is_layer(l));
  CHECK_FALSE(c.deltanet.is_layer(3));
  CHECK(c.rotary() == 8);
  CHECK(c.deltanet.key_heads == 2);
  CHECK(c.deltanet.value_heads == 4);  // two value heads per key head: the interleaving is not the identity
  std::map<std::string, std::vector<std::int64_t>> implied;
  for (const auto& [n, shape] : expected_tensors(c)) CHECK(implied.emplace(n, shape).second);
  std::set<std::string> stored;
  for (const auto& n : model.dir().tensor_names()) {
    stored.insert(n);
    CHECK_MESSAGE(implied.contains(n), n << " is stored but not in the description");
    if (implied.contains(n)) CHECK(model.dir().tensor(n).shape == implied.at(n));
  }
  for (const auto& [n, shape] : implied) CHECK_MESSAGE(stored.contains(n), n << " is implied but not stored");
  const std::string l0 = "model.layers.0.", l3 = "model.layers.3.";
  CHECK(implied.at(l0 + "linear_attn.in_proj_qkvz.weight") == std::vector<std::int64_t>{384, 128});
  CHECK(implied.at(l0 + "linear_attn.in_proj_ba.weight") == std::vector<std::int64_t>{8, 128});
  CHECK(implied.contains(l0 + "mlp.experts.7.down_proj.weight"));
  const auto p = pq::arch::make_profile(model.config());
  std::vector<std::string> units;
  for (const auto& u : p.units)
    if (u.layer == 0 || u.layer == 3) units.push_back(u.name);
  CHECK(units == std::vector<std::string>{l0 + "linear_attn.in_proj_qkvz", l0 + "linear_attn.in_proj_ba",
                                          l0 + "linear_attn.out_proj", l0 + "mlp.experts",
                                          l0 + "mlp.shared_expert.gate_up_proj", l0 + "mlp.shared_expert.down_proj",
                                          l3 + "self_attn.qkv_proj", l3 + "self_attn.o_proj", l3 + "mlp.experts",
                                          l3 + "mlp.shared_expert.gate_up_proj", l3 + "mlp.shared_expert.down_proj"});
}

TEST_CASE("tiny-qwen3next-code reproduces ref_logits") {
  const auto dir = hybrid_model_dir("tiny-qwen3next-code");
  const source_model model(dir);
  const double diff = hybrid_logit_diff(dir, model.weights(), model.shape());
  MESSAGE("tiny-qwen3next-code: max |logits - ref_logits| = " << diff);
  CHECK(diff < 1e-4);
}

TEST_CASE("tiny-qwen3next-code: eval NLL of each of the first eval windows within 0.1% of the reference") {
  check_window_nll(hybrid_model_dir("tiny-qwen3next-code"));
}

TEST_CASE("tiny-qwen3next-code: the incremental decoder (DeltaNet state, KV cache) equals the forward") {
  const double diff = hybrid_decoder_diff(hybrid_model_dir("tiny-qwen3next-code"));
  MESSAGE("tiny-qwen3next-code: decoder vs forward: max |diff| = " << diff);
  CHECK(diff < 1e-4);
}
