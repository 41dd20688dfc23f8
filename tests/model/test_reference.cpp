// The forward reproduces the reference implementation on both trained test models:
// ref_logits of tokens.safetensors (the eval NLLs are in test_reference_nll.cpp).
#include <pq/model/forward.hpp>
#include <pq/model/source_model.hpp>

#include <doctest/doctest.h>

using namespace pq::model;

namespace {

void check_ref_logits(const char* folder) {
  const auto dir = std::filesystem::path(PQ_MODELS_DIR) / folder;
  if (!std::filesystem::exists(dir / "config.json")) {
    MESSAGE("skipped: " << dir.string() << " is absent");
    return;
  }
  const source_model model(dir);
  const token_batch eval = load_tokens(dir / "tokens.safetensors", "eval", model.shape().vocab);
  const auto file = pq::io::safetensors_file::open(dir / "tokens.safetensors");
  const auto& ref_view = file.at("ref_logits");  // [2, 16, vocab]
  REQUIRE(ref_view.shape == std::vector<std::int64_t>{2, 16, model.shape().vocab});
  const std::vector<float> ref = pq::io::to_float(ref_view);

  // Positions 0..15 of a causal model depend on tokens 0..15 only.
  token_batch prefix{2, 16, {}};
  for (Eigen::Index s = 0; s < 2; ++s)
    for (Eigen::Index p = 0; p < 16; ++p) prefix.ids.push_back(eval.at(s, p));
  const runner r(model.weights(), model.shape());
  const matrix logits = r.logits(prefix);
  const Eigen::Map<const matrix> expected(ref.data(), 32, model.shape().vocab);
  const double diff = (logits - expected).cwiseAbs().maxCoeff();
  MESSAGE(std::string(folder) << ": max |logits - ref_logits| = " << diff);
  CHECK(diff < 1e-4);
}

}  // namespace

TEST_CASE("tiny-llama-code reproduces ref_logits") { check_ref_logits("tiny-llama-code"); }
TEST_CASE("tiny-qwen2moe-code reproduces ref_logits") { check_ref_logits("tiny-qwen2moe-code"); }
