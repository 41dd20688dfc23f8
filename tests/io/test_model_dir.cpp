// Real checkpoints: config parsing, the architecture profile against the tensors on disk, and the
// forward over the lazily read shards reproducing the reference logits.
#include <doctest/doctest.h>

#include <filesystem>
#include <cstring>
#include <fstream>

#include <pq/io/model_dir.hpp>
#include <pq/model/architecture.hpp>
#include <pq/model/checkpoint_weights.hpp>
#include <pq/model/config.hpp>
#include <pq/model/forward.hpp>

namespace fs = std::filesystem;
using namespace pq;

namespace {
bool have_models() {
  if (fs::exists(fs::path(PQ_MODELS_DIR) / "tiny-llama-code")) return true;
  MESSAGE("SKIPPED: " << PQ_MODELS_DIR << " not found");
  return false;
}
struct expected { const char* dir; std::size_t linears, units; };
}  // namespace

TEST_CASE("profiles of the test models match their tensors") {
  if (!have_models()) return;
  for (const expected e : {expected{"tiny-llama-code", 6 * 7, 6 * 4}, expected{"tiny-qwen2moe-code", 7 + 5 * 31, 4 + 5 * 5}}) {
    CAPTURE(std::string(e.dir));
    const auto dir = io::model_dir::open(fs::path(PQ_MODELS_DIR) / e.dir);
    const auto cfg = model::parse_config(dir.config_json(), "config.json");
    const auto p = model::make_profile(cfg);
    CHECK(p.linears.size() == e.linears);
    CHECK(p.units.size() == e.units);
    for (const auto& l : p.linears) {
      REQUIRE(dir.has(l.name + ".weight"));
      const auto& t = dir.tensor(l.name + ".weight");
      CHECK(t.shape == std::vector<std::int64_t>{l.rows, l.cols});
      CHECK(t.type == dtype::BF16);
    }
    for (const auto& name : p.unquantized_linears)
      if (name != "lm_head") CHECK(dir.has(name + ".weight"));
    CHECK_FALSE(dir.has("lm_head.weight"));  // tied
    CHECK(cfg.shape.tied_embeddings);
    CHECK(cfg.shape.rope_theta == 10000.0);  // from the nested rope_parameters
  }
}

TEST_CASE("the forward over the checkpoint reproduces the reference logits") {
  if (!have_models()) return;
  for (const std::string name : {"tiny-llama-code", "tiny-qwen2moe-code"}) {
    CAPTURE(name);
    const fs::path root = fs::path(PQ_MODELS_DIR) / name;
    const auto dir = io::model_dir::open(root);
    const auto cfg = model::parse_config(dir.config_json(), "config.json");
    const model::checkpoint_weights weights(dir);
    const model::runner run(weights, cfg.shape);
    const auto tokens = io::safetensors_file::open(root / "tokens.safetensors");
    const auto& eval = tokens.at("eval");
    const auto& ref = tokens.at("ref_logits");  // [2, 16, vocab]
    std::vector<std::int32_t> ids(32);
    for (int s = 0; s < 2; ++s)
      std::memcpy(ids.data() + 16 * s, eval.data.data() + s * eval.shape[1] * 4, 16 * 4);
    const auto batch = model::make_token_batch(std::vector<std::int64_t>{2, 16}, ids, cfg.shape.vocab, "eval[0:2, 0:16]");
    const auto logits = run.logits(batch);
    const auto expect = io::to_float(ref);
    double worst = 0;
    for (std::size_t i = 0; i < expect.size(); ++i)
      worst = std::max(worst, std::fabs(double(logits.data()[i]) - expect[i]));
    CHECK(worst < 1e-3);
    MESSAGE(name << ": max |logit - reference| = " << worst);
  }
}

TEST_CASE("bad model directories are one clear error") {
  const fs::path tmp = fs::temp_directory_path() / "pq_test_bad_model_dir";
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  CHECK_THROWS_WITH_AS(io::model_dir::open(tmp / "nope"), doctest::Contains("not a model directory"), io::model_dir_error);
  CHECK_THROWS_WITH_AS(io::model_dir::open(tmp), doctest::Contains("no config.json"), io::model_dir_error);
  std::ofstream(tmp / "config.json") << R"({"model_type": "gpt2", "hidden_size": 8})";
  CHECK_THROWS_WITH_AS(model::parse_config(io::read_json_file(tmp / "config.json"), "config.json"),
                       doctest::Contains("unsupported architecture 'gpt2' (supported: llama, mistral"), model::config_error);
  CHECK_THROWS_WITH_AS(io::model_dir::open(tmp), doctest::Contains("no model.safetensors"), io::model_dir_error);
  std::ofstream(tmp / "model.safetensors.index.json") << R"({"weight_map": {"a": "model-00001-of-00002.safetensors"}})";
  CHECK_THROWS_WITH_AS(io::model_dir::open(tmp), doctest::Contains("missing (partial download?)"), io::model_dir_error);
  fs::remove_all(tmp);
}
