// Tests of linear_stats: exact accumulation against a plain fp64 loop, merge, bytes, and bad input.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <string>

#include <pq/quant/hessian.hpp>

#include "synthetic.hpp"

using pq::index_t;

TEST_CASE("linear_stats accumulates XᵀX, Σx², amax and the token count like a plain fp64 loop") {
  const index_t cols = 24, tokens = 300;  // more than one internal chunk
  const auto x = pq::test::correlated_activations(tokens, cols, 1);
  pq::linear_stats s("layer.q_proj", cols);
  s.add(x.data(), 100);
  s.add(x.data() + 100 * cols, tokens - 100);
  CHECK(s.count == tokens);
  const Eigen::MatrixXd H = s.hessian();
  float amax = 0.0f;
  for (float v : x) amax = std::max(amax, std::fabs(v));
  CHECK(s.amax == amax);
  for (index_t i = 0; i < cols; ++i) {
    for (index_t j = 0; j < cols; ++j) {
      double ref = 0.0;
      for (index_t t = 0; t < tokens; ++t)
        ref += static_cast<double>(x[t * cols + i]) * static_cast<double>(x[t * cols + j]);
      CHECK(H(i, j) == doctest::Approx(ref).epsilon(1e-12));
    }
    CHECK(s.x2_sum[i] == doctest::Approx(H(i, i)).epsilon(1e-12));
    CHECK(s.x2_mean()[i] == doctest::Approx(H(i, i) / tokens).epsilon(1e-12));
  }
}

TEST_CASE("merging two halves equals accumulating everything in one") {
  const index_t cols = 16, tokens = 64;
  const auto x = pq::test::correlated_activations(tokens, cols, 2);
  pq::linear_stats all("l", cols), a("l", cols), b("l", cols);
  all.add(x.data(), tokens);
  a.add(x.data(), 20);
  b.add(x.data() + 20 * cols, tokens - 20);
  a.merge(b);
  CHECK(a.count == all.count);
  CHECK(a.amax == all.amax);
  CHECK((a.hessian() - all.hessian()).cwiseAbs().maxCoeff() <= 1e-12 * all.hessian().cwiseAbs().maxCoeff());
  pq::linear_stats other("l", cols + 1);
  CHECK_THROWS_AS(a.merge(other), pq::quant_error);
}

TEST_CASE("bytes round-trip exactly; a corrupt or truncated stream is one clear error") {
  const index_t cols = 10;
  const auto x = pq::test::correlated_activations(40, cols, 3);
  pq::linear_stats s("model.layers.3.mlp.up_proj", cols);
  s.add(x.data(), 40);
  const auto bytes = s.to_bytes();
  const pq::linear_stats r = pq::linear_stats::from_bytes(bytes);
  CHECK(r.name == s.name);
  CHECK(r.cols == cols);
  CHECK(r.count == 40);
  CHECK(r.amax == s.amax);
  CHECK(r.x2_sum == s.x2_sum);
  CHECK(r.hessian() == s.hessian());

  auto truncated = bytes;
  truncated.pop_back();
  CHECK_THROWS_AS(pq::linear_stats::from_bytes(truncated), pq::quant_error);
  auto bad_magic = bytes;
  bad_magic[0] = std::byte{0};
  CHECK_THROWS_WITH_AS(pq::linear_stats::from_bytes(bad_magic), doctest::Contains("magic"), pq::quant_error);
}

TEST_CASE("a non-finite activation is an error naming the Linear, and nothing is added") {
  const index_t cols = 8;
  auto x = pq::test::correlated_activations(5, cols, 4);
  x[3 * cols + 2] = std::numeric_limits<float>::quiet_NaN();
  pq::linear_stats s("model.layers.0.self_attn.k_proj", cols);
  CHECK_THROWS_WITH_AS(s.add(x.data(), 5), doctest::Contains("model.layers.0.self_attn.k_proj"), pq::quant_error);
  CHECK(s.count == 0);
  CHECK(s.hessian().isZero());
  x[3 * cols + 2] = std::numeric_limits<float>::infinity();
  CHECK_THROWS_AS(s.add(x.data(), 5), pq::quant_error);
}
