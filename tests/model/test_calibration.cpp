// Calibration statistics on small random decoders: XtX against an independent computation, MoE routing counts, damping, file round trip.
#include "synthetic.hpp"

#include <pq/model/calibration.hpp>
#include <pq/model/stats_io.hpp>

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

using namespace pq::model;

TEST_CASE("layer-0 q/k/v statistics equal X^T X of the normalised embeddings") {
  const forward_config c = test::tiny_config(false, false);
  const memory_weights w = test::random_weights(c, 1);
  const runner r(w, c, {2, 16});
  const token_batch t = test::random_tokens(c, 3, 8, 2);
  const calibration_stats s = calibrate(r, t, {.gradient_sequences = 2});

  // Independent reference: embedding rows, RMSNorm in double, outer products in double.
  const dense_tensor emb = w.load("model.embed_tokens.weight");
  const dense_tensor g = w.load("model.layers.0.input_layernorm.weight");
  matrix_d x(t.tokens(), c.hidden);
  for (Eigen::Index i = 0; i < t.tokens(); ++i) {
    double ms = 0;
    for (Eigen::Index j = 0; j < c.hidden; ++j) ms += std::pow(emb.data[static_cast<std::size_t>(t.ids[i] * c.hidden + j)], 2);
    const double inv = 1 / std::sqrt(ms / static_cast<double>(c.hidden) + c.rms_eps);
    for (Eigen::Index j = 0; j < c.hidden; ++j)
      x(i, j) = emb.data[static_cast<std::size_t>(t.ids[i] * c.hidden + j)] * inv * g.data[static_cast<std::size_t>(j)];
  }
  const matrix_d expected = x.transpose() * x;

  const linear_stats& q = s.linears.at("model.layers.0.self_attn.q_proj");
  CHECK(q.input == s.linears.at("model.layers.0.self_attn.k_proj").input);
  CHECK(q.input == s.linears.at("model.layers.0.self_attn.v_proj").input);
  CHECK(q.input != s.linears.at("model.layers.0.self_attn.o_proj").input);
  CHECK(q.input->tokens == t.tokens());
  CHECK((q.input->xtx - expected).cwiseAbs().maxCoeff() < 1e-4 * expected.cwiseAbs().maxCoeff());
  CHECK((q.input->mean_sq - expected.diagonal() / static_cast<double>(t.tokens())).cwiseAbs().maxCoeff() < 1e-5);
  CHECK(q.input->amax == doctest::Approx(x.cwiseAbs().maxCoeff()).epsilon(1e-5));
  CHECK(s.tokens == t.tokens());
  CHECK(s.gradient_tokens == 2 * 8);
  for (const auto& [name, ls] : s.linears) {
    INFO(name);
    CHECK(ls.sensitivity > 0);
    CHECK(std::isfinite(ls.sensitivity));
    CHECK(ls.gradient_tokens == 16);
  }
}

TEST_CASE("expert statistics come only from routed tokens; an expert never routed to gets pooled, damped statistics") {
  forward_config c = test::tiny_config(true, false);
  c.moe.experts_per_token = 1;
  memory_weights w = test::random_weights(c, 5);
  // Router: experts 0 and 1 get logits +-5 x.u, expert 3 logit 0: expert 3 is never the top-1.
  matrix router = load_matrix(w, "model.layers.1.mlp.gate.weight", 4, c.hidden);
  router.row(1) = -router.row(0);
  router.row(0) *= 5;
  router.row(1) *= 5;
  router.row(3).setZero();
  w.add("model.layers.1.mlp.gate.weight", router);
  const runner r(w, c, {1, 32});
  const token_batch t = test::random_tokens(c, 4, 8, 9);
  const calibration_stats s = calibrate(r, t, {.gradient_sequences = 4, .min_expert_tokens = 1});

  auto stats = [&](int e, const char* proj) -> const linear_stats& {
    return s.linears.at("model.layers.1.mlp.experts." + std::to_string(e) + "." + proj);
  };
  std::int64_t routed = 0;
  for (int e = 0; e < 4; ++e) routed += stats(e, "gate_proj").input->tokens;
  CHECK(routed == t.tokens());  // top-1: every token reaches exactly one expert
  CHECK(stats(0, "gate_proj").input == stats(0, "up_proj").input);
  CHECK(s.linears.at("model.layers.1.mlp.shared_expert.gate_proj").input->tokens == t.tokens());

  const linear_stats& never = stats(3, "gate_proj");
  CHECK(never.input->tokens == 0);
  CHECK(never.input->prior_tokens == doctest::Approx(1));
  CHECK(never.gradient_tokens == 0);
  CHECK(never.sensitivity > 0);
  // pooled per-token XtX of the routed experts (each saw >= 1 token: none damped), one pseudo-token
  matrix_d pooled = matrix_d::Zero(c.hidden, c.hidden);
  for (int e = 0; e < 3; ++e)
    if (stats(e, "gate_proj").input->prior_tokens == 0) pooled += stats(e, "gate_proj").input->xtx;
  std::int64_t n = 0;
  for (int e = 0; e < 3; ++e)
    if (stats(e, "gate_proj").input->prior_tokens == 0) n += stats(e, "gate_proj").input->tokens;
  REQUIRE(n > 0);
  CHECK((never.input->xtx - pooled / static_cast<double>(n)).cwiseAbs().maxCoeff() < 1e-9 * pooled.cwiseAbs().maxCoeff() + 1e-12);
  CHECK(stats(3, "down_proj").input->xtx.trace() > 0);
  CHECK(stats(3, "down_proj").input->amax > 0);
}

TEST_CASE("statistics survive a save/load round trip, sharing included; corrupt files are refused") {
  const forward_config c = test::tiny_config(true, true);
  const memory_weights w = test::random_weights(c, 11);
  const runner r(w, c, {1, 32});
  const calibration_stats s = calibrate(r, test::random_tokens(c, 2, 8, 4), {.gradient_sequences = 1});
  const auto path = std::filesystem::temp_directory_path() / "pq_model_test_stats.bin";
  save_stats(s, path);
  const calibration_stats back = load_stats(path);
  CHECK(back.tokens == s.tokens);
  CHECK(back.gradient_tokens == s.gradient_tokens);
  REQUIRE(back.linears.size() == s.linears.size());
  for (const auto& [name, ls] : s.linears) {
    const linear_stats& b = back.linears.at(name);
    CHECK(b.sensitivity == ls.sensitivity);
    CHECK(b.gradient_tokens == ls.gradient_tokens);
    CHECK(b.input->xtx == ls.input->xtx);
    CHECK(b.input->mean_sq == ls.input->mean_sq);
    CHECK(b.input->amax == ls.input->amax);
    CHECK(b.input->tokens == ls.input->tokens);
  }
  CHECK(back.linears.at("model.layers.0.self_attn.q_proj").input == back.linears.at("model.layers.0.self_attn.v_proj").input);

  const auto size = std::filesystem::file_size(path);
  std::filesystem::resize_file(path, size / 2);
  CHECK_THROWS_WITH_AS(load_stats(path), doctest::Contains("truncated"), model_error);
  std::ofstream(path, std::ios::binary) << "NOTSTATSxxxxxxxx";
  CHECK_THROWS_WITH_AS(load_stats(path), doctest::Contains("bad magic"), model_error);
  std::filesystem::remove(path);
}
