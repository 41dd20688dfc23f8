// The forward reproduces the eval NLLs stated in shared/models/README.md on all 64 x 511 positions
// (the slowest model test: two full forwards of 32768 tokens; skipped under sanitizers, where
// test_reference.cpp still checks the logits).
#include <pq/model/evaluation.hpp>
#include <pq/model/source_model.hpp>

#include <doctest/doctest.h>

using namespace pq::model;

namespace {

struct reference_case {
  const char* folder;
  double readme_nll;  // shared/models/README.md
};

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

TEST_CASE("tiny-llama-code reproduces the README eval NLL") { check_eval_nll(llama); }
TEST_CASE("tiny-qwen2moe-code reproduces the README eval NLL") { check_eval_nll(moe); }
