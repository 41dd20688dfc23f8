// Gradients of the backward pass against central finite differences of the forward.
#include "synthetic.hpp"

#include <doctest/doctest.h>

#include <pq/model/source_model.hpp>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <mutex>

using namespace pq::model;

namespace {

// Records every Linear's input (forward) and output gradient (backward), rows concatenated.
struct recorder final : linear_hooks {
  std::map<std::string, matrix> x, dy;
  void on_input(std::span<const std::string* const> ls, const matrix& in) override {
    for (const std::string* n : ls) append(x[*n], in);
  }
  void on_output_grad(const std::string& n, const matrix& g) override { append(dy[n], g); }
  static void append(matrix& m, const matrix& rows) {
    if (m.size() == 0) {
      m = rows;
      return;
    }
    matrix both(m.rows() + rows.rows(), m.cols());
    both << m, rows;
    m = both;
  }
};

// L = sum(layer_output .* R): dL/d(layer output) = R. Summed in double: the finite differences below divide
// its change by a small step.
double probe_loss(const runner& r, const layer_weights& lw, matrix h, const matrix& probe, Eigen::Index len) {
  r.run_layer(lw, h, len);
  return h.cast<double>().cwiseProduct(probe.cast<double>()).sum();
}

// Layer `layer`'s backward on input h (rows: sequences of `len` tokens) against central differences of the
// forward along random directions of h's own scale: d/d(layer input).
void check_input_gradient(const weight_provider& w, const forward_config& c, int layer, const matrix& h,
                          Eigen::Index len, float eps) {
  const runner r(w, c, {1, 1 << 20});
  const layer_weights lw = r.load_layer(layer);
  std::srand(11);
  const matrix probe = matrix::Random(h.rows(), h.cols());
  const matrix dh = r.backward_layer(lw, h, probe, len, nullptr);
  for (int trial = 0; trial < 2; ++trial) {
    const matrix e = matrix::Random(h.rows(), h.cols()) * (h.cwiseAbs().mean() / 0.5f);
    const double fd = (probe_loss(r, lw, h + eps * e, probe, len) - probe_loss(r, lw, h - eps * e, probe, len)) / (2 * eps);
    const double analytic = dh.cast<double>().cwiseProduct(e.cast<double>()).sum();
    INFO("layer " << layer << ", input direction " << trial);
    CHECK(analytic == doctest::Approx(fd).epsilon(0.01));
  }
}

// The same for dL/dW = dy^T x (the hooks' inputs and output gradients) of every Linear of the layer, along a
// random direction of each weight's own scale.
void check_weight_gradients(const weight_provider& w, const forward_config& c, int layer, const matrix& h,
                            Eigen::Index len, float eps, bool (*which)(const std::string&) = nullptr) {
  const runner r(w, c, {1, 1 << 20});
  const layer_weights lw = r.load_layer(layer);
  std::srand(12);
  const matrix probe = matrix::Random(h.rows(), h.cols());
  recorder rec;
  matrix out = h;
  r.run_layer(lw, out, len, &rec);
  r.backward_layer(lw, h, probe, len, &rec);
  int checked = 0;
  for (const std::string& name : linear_names(c, layer)) {
    if (!rec.dy.contains(name)) continue;  // an expert no token was routed to
    if (which && !which(name)) continue;
    REQUIRE(rec.x.contains(name));
    REQUIRE(rec.x[name].rows() == rec.dy[name].rows());
    const matrix grad = rec.dy[name].transpose() * rec.x[name];
    const matrix w0 = load_matrix(w, name + ".weight", grad.rows(), grad.cols());
    const matrix e = matrix::Random(grad.rows(), grad.cols()) * (w0.cwiseAbs().mean() / 0.5f);
    substituted_weights plus(w), minus(w);
    plus.substitute(name, w0 + eps * e);
    minus.substitute(name, w0 - eps * e);
    const double fd = (probe_loss(r, runner(plus, c).load_layer(layer), h, probe, len) -
                       probe_loss(r, runner(minus, c).load_layer(layer), h, probe, len)) /
                      (2 * eps);
    const double analytic = grad.cast<double>().cwiseProduct(e.cast<double>()).sum();
    INFO(name);
    CHECK(analytic == doctest::Approx(fd).epsilon(0.01));
    ++checked;
  }
  CHECK(checked >= 3);
}

void check_layer(bool moe, bool qk_norm) {
  const forward_config c = test::tiny_config(moe, qk_norm);
  memory_weights w = test::random_weights(c, 7);
  const runner r(w, c, {1, 64});
  const Eigen::Index len = 6;
  const token_batch t = test::random_tokens(c, 2, len, 3);
  matrix h = r.embed(t);
  r.run_layer(r.load_layer(0), h, len);
  check_input_gradient(w, c, 1, h, len, 2e-3f);  // the MoE layer when moe
  check_weight_gradients(w, c, 1, h, len, 2e-3f);
}

}  // namespace

TEST_CASE("backward of a dense layer with q/k/v bias matches finite differences") { check_layer(false, false); }
TEST_CASE("backward of a layer with q/k norm matches finite differences") { check_layer(false, true); }
TEST_CASE("backward of a qwen2_moe layer (shared expert, no renormalisation) matches finite differences") {
  check_layer(true, false);
}
TEST_CASE("backward of a qwen3_moe-style layer (renormalised top-k) matches finite differences") {
  check_layer(true, true);
}

// The hybrid decoders' layer kinds on the tiny trained checkpoints: a gated DeltaNet layer (conv, decay,
// delta rule, gated norm; 70 tokens, so the reverse pass crosses a state checkpoint) and a gated-attention layer
// (output gate in q_proj, q/k norm, partial rotary), both with the routed and shared experts.
static void check_hybrid_layers(const char* model_name) {
  CAPTURE(model_name);
  const auto dir = std::filesystem::path(PQ_SOURCE_DIR) / "tests" / "models" / model_name;
  const source_model model(dir);
  const forward_config& c = model.shape();
  const Eigen::Index len = 70;
  const token_batch eval = load_tokens(dir / "tokens.safetensors", "eval", c.vocab);
  token_batch t{2, len, {}};
  for (Eigen::Index s = 0; s < 2; ++s)
    for (Eigen::Index p = 0; p < len; ++p) t.ids.push_back(eval.at(s, p));
  const runner r(model.weights(), c);
  matrix h = r.embed(t);
  for (int layer = 0; layer < c.layers; ++layer) {
    if (layer == 0 || layer == c.layers - 1) {
      CAPTURE(layer);
      CHECK((layer == 0) == c.deltanet.is_layer(layer));
      // Along a dense direction of the input or of a mixer weight some token would change experts (a jump no
      // derivative sees): with the router zeroed every token keeps experts 0 and 1 at equal weight. The
      // feed-forward half's own Linears cannot move its routing: they are checked with the real router.
      substituted_weights fixed_routing(model.weights());
      const std::string router = pq::arch::layer_prefix(*c.architecture, layer) + ".mlp.gate";
      fixed_routing.substitute(router, matrix::Zero(c.moe.num_experts, c.hidden));
      check_weight_gradients(model.weights(), c, layer, h, len, 4e-3f,
                             [](const std::string& n) { return n.find(".mlp.") != std::string::npos; });
      check_weight_gradients(fixed_routing, c, layer, h, len, 4e-3f,
                             [](const std::string& n) { return n.find(".mlp.") == std::string::npos; });
      check_input_gradient(fixed_routing, c, layer, h, len, 4e-3f);
    }
    r.run_layer(r.load_layer(layer), h, len);
  }
}

TEST_CASE("backward of the gated DeltaNet and gated-attention layers matches finite differences: Qwen3.5-MoE") {
  check_hybrid_layers("tiny-qwen3_5moe-code");
}
TEST_CASE("backward of the gated DeltaNet and gated-attention layers matches finite differences: Qwen3-Next") {
  check_hybrid_layers("tiny-qwen3next-code");  // in_proj_qkvz / in_proj_ba fused and interleaved per key head
}
