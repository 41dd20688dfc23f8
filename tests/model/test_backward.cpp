// Gradients of the backward pass against central finite differences of the forward.
#include "synthetic.hpp"

#include <doctest/doctest.h>

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

// L = sum(layer_output .* R): dL/d(layer output) = R.
double probe_loss(const runner& r, const layer_weights& lw, matrix h, const matrix& probe, Eigen::Index len) {
  r.run_layer(lw, h, len);
  return static_cast<double>(h.cwiseProduct(probe).sum());
}

void check_layer(bool moe, bool qk_norm) {
  const forward_config c = test::tiny_config(moe, qk_norm);
  memory_weights w = test::random_weights(c, 7);
  const runner r(w, c, {1, 64});
  const Eigen::Index len = 6;
  const token_batch t = test::random_tokens(c, 2, len, 3);
  const int layer = 1;  // the MoE layer when moe
  matrix h = r.embed(t);
  r.run_layer(r.load_layer(0), h, len);
  const layer_weights lw = r.load_layer(layer);
  const matrix probe = matrix::Random(h.rows(), h.cols());

  recorder rec;
  matrix out = h;
  r.run_layer(lw, out, len, &rec);
  const matrix dh = r.backward_layer(lw, h, probe, len, &rec);

  const float eps = 2e-3f;
  // d/d(layer input), a few entries
  for (auto [i, j] : {std::pair<Eigen::Index, Eigen::Index>{0, 0}, {3, 5}, {7, 11}, {11, 15}}) {
    matrix hp = h, hm = h;
    hp(i, j) += eps;
    hm(i, j) -= eps;
    const double fd = (probe_loss(r, lw, hp, probe, len) - probe_loss(r, lw, hm, probe, len)) / (2 * eps);
    CHECK(dh(i, j) == doctest::Approx(fd).epsilon(0.02).scale(1.0));
  }
  // dL/dW = dy^T x for every Linear of the layer, one weight each
  for (const std::string& name : linear_names(c, layer)) {
    if (!rec.dy.contains(name)) continue;  // an expert no token was routed to
    REQUIRE(rec.x.contains(name));
    REQUIRE(rec.x[name].rows() == rec.dy[name].rows());
    const matrix grad = rec.dy[name].transpose() * rec.x[name];
    const std::string wname = name + ".weight";
    const matrix w0 = load_matrix(w, wname, grad.rows(), grad.cols());
    const Eigen::Index i = grad.rows() / 2, j = grad.cols() / 3;
    substituted_weights plus(w), minus(w);
    matrix wp = w0, wm = w0;
    wp(i, j) += eps;
    wm(i, j) -= eps;
    plus.substitute(name, wp);
    minus.substitute(name, wm);
    const double fd = (probe_loss(runner(plus, c, {1, 64}), runner(plus, c).load_layer(layer), h, probe, len) -
                       probe_loss(runner(minus, c, {1, 64}), runner(minus, c).load_layer(layer), h, probe, len)) /
                      (2 * eps);
    INFO(name);
    CHECK(grad(i, j) == doctest::Approx(fd).epsilon(0.02).scale(1.0));
  }
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
