// The forward reproduces the reference implementation on both trained test models:
// ref_logits of tokens.safetensors and the eval NLLs stated in shared/models/README.md.
#include <pq/model/evaluation.hpp>
#include <pq/model/source_model.hpp>

#include <doctest/doctest.h>

using namespace pq::model;

namespace {

struct reference_case {
  const char* folder;
  double readme_nll;  // shared/models/README.md
};

void check_ref_logits(const reference_case& rc) {
  const auto dir = std::filesystem::path(PQ_MODELS_DIR) / rc.folder;
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
  MESSAGE(std::string(rc.folder) << ": max |logits - ref_logits| = " << diff);
  CHECK(diff < 1e-4);
}

void check_eval_nll(const reference_case& rc) {
  const auto dir = std::filesystem::path(PQ_MODELS_DIR) / rc.folder;
  if (!std::filesystem::exists(dir / "config.json")) {
    MESSAGE("skipped: " << dir.string() << " is absent");
    return;
  }
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  MESSAGE("skipped under sanitizers: the full eval NLL runs 32768 positions (ref_logits are checked above)");
  return;
#else
  const source_model model(dir);
  const token_batch eval = load_tokens(dir / "tokens.safetensors", "eval", model.shape().vocab);
  const runner r(model.weights(), model.shape());
  const reference_cache cache(r, eval);
  MESSAGE(std::string(rc.folder) << ": eval NLL " << cache.reference().nll << " (README " << rc.readme_nll << ")");
  CHECK(cache.reference().nll == doctest::Approx(rc.readme_nll).epsilon(1e-3));
  CHECK(cache.reference().nll_positions == 64 * 511);
#endif
}

constexpr reference_case llama{"tiny-llama-code", 1.6360};
constexpr reference_case moe{"tiny-qwen2moe-code", 1.7080};

}  // namespace

TEST_CASE("tiny-llama-code reproduces ref_logits") { check_ref_logits(llama); }
TEST_CASE("tiny-qwen2moe-code reproduces ref_logits") { check_ref_logits(moe); }
TEST_CASE("tiny-llama-code reproduces the README eval NLL") { check_eval_nll(llama); }
TEST_CASE("tiny-qwen2moe-code reproduces the README eval NLL") { check_eval_nll(moe); }
