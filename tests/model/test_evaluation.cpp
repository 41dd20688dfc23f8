// KL/NLL evaluation on small random decoders: identity, replay from the changed layer, independent NLL.
#include "synthetic.hpp"

#include <pq/model/evaluation.hpp>

#include <doctest/doctest.h>

using namespace pq::model;

namespace {
// Symmetric round-to-nearest onto 2^(bits-1)-1 levels per row: coarser with fewer bits.
matrix round_rows(const matrix& w, int bits) {
  const float levels = static_cast<float>((1 << (bits - 1)) - 1);
  matrix q = w;
  for (Eigen::Index r = 0; r < w.rows(); ++r) {
    const float s = w.row(r).cwiseAbs().maxCoeff() / levels;
    q.row(r) = (w.row(r) / s).array().round().matrix() * s;
  }
  return q;
}
}  // namespace

TEST_CASE("KL of the unchanged model is 0 and its NLL matches log-softmax of the full logits") {
  for (bool moe : {false, true}) {
    const forward_config c = test::tiny_config(moe, !moe);
    const memory_weights w = test::random_weights(c, 21);
    const runner r(w, c, {2, 16});
    const token_batch t = test::random_tokens(c, 3, 8, 22);
    const reference_cache cache(r, t);
    CHECK(cache.reference().kl == 0.0);
    CHECK(cache.evaluate(w, 0).kl == doctest::Approx(0).scale(1e-9));

    const matrix logits = r.logits(t);
    double nll = 0;
    for (Eigen::Index s = 0; s < t.sequences; ++s)
      for (Eigen::Index p = 0; p + 1 < t.length; ++p) {
        const Eigen::RowVectorXd l = logits.row(s * t.length + p).cast<double>();
        nll += std::log(l.array().exp().sum()) - l(t.at(s, p + 1));
      }
    nll /= static_cast<double>(t.sequences * (t.length - 1));
    CHECK(cache.reference().nll == doctest::Approx(nll).epsilon(1e-5));
    CHECK(cache.reference().nll_positions == 3 * 7);
    CHECK(cache.reference().kl_positions == 3 * 8);
  }
}

TEST_CASE("replaying from the first changed layer equals a full run; KL grows as a Linear gets coarser") {
  const forward_config c = test::tiny_config(true, false);
  const memory_weights w = test::random_weights(c, 31);
  const runner r(w, c, {2, 16});
  const token_batch t = test::random_tokens(c, 4, 8, 32);
  const reference_cache cache(r, t);
  const std::string name = "model.layers.1.mlp.shared_expert.down_proj";
  const matrix w0 = load_matrix(w, name + ".weight", c.hidden, c.moe.shared_expert_intermediate);

  double previous = 0;
  for (int bits : {8, 4, 2}) {
    substituted_weights q(w);
    q.substitute(name, round_rows(w0, bits));
    const eval_result replay = cache.evaluate(q);
    const eval_result full = cache.evaluate(q, 0);
    CHECK(replay.kl == doctest::Approx(full.kl).epsilon(1e-6));
    CHECK(replay.nll == doctest::Approx(full.nll).epsilon(1e-6));
    CHECK(replay.kl > previous);
    previous = replay.kl;
  }
  CHECK(layer_of(name) == 1);
  CHECK(layer_of("model.embed_tokens.weight") == -1);
}
