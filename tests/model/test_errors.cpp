// Bad input gets one clear error naming what is wrong.
#include "synthetic.hpp"

#include <pq/model/source_model.hpp>

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

using namespace pq::model;

TEST_CASE("token ids outside the vocabulary and misshapen token tensors are refused") {
  const std::vector<std::int64_t> shape{1, 3};
  CHECK_THROWS_WITH_AS(make_token_batch(shape, {1, 32, 2}, 32, "tokens.safetensors:eval"),
                       doctest::Contains("token id 32 at position 1 is outside the vocabulary [0, 32)"), model_error);
  CHECK_THROWS_WITH_AS(make_token_batch(shape, {1, -1, 2}, 32, "f:eval"), doctest::Contains("token id -1"), model_error);
  const std::vector<std::int64_t> flat{3};
  CHECK_THROWS_WITH_AS(make_token_batch(flat, {1, 2, 3}, 32, "f:eval"),
                       doctest::Contains("f:eval: token tensor must have shape [sequences, length]"), model_error);
  CHECK_THROWS_WITH_AS(make_token_batch(shape, {1, 2}, 32, "f:eval"), doctest::Contains("holds 2 ids"), model_error);

  const forward_config c = test::tiny_config(false, false);
  const memory_weights w = test::random_weights(c, 1);
  const runner r(w, c);
  CHECK_THROWS_WITH_AS(r.embed(token_batch{1, 2, {0, 99}}), doctest::Contains("token id 99"), model_error);
}

TEST_CASE("checkpoint tensors that do not match the config are named") {
  const forward_config c = test::tiny_config(true, false);
  memory_weights w = test::random_weights(c, 2);
  w.add("model.layers.1.mlp.experts.2.up_proj.weight", matrix(12, 15));
  CHECK_THROWS_WITH_AS(load_layer(w, c, 1),
                       doctest::Contains("tensor 'model.layers.1.mlp.experts.2.up_proj.weight' has shape [12, 15] but "
                                         "config.json implies [12, 16]"),
                       model_error);
  forward_config more = c;
  more.moe.num_experts = 5;
  CHECK_THROWS_WITH_AS(load_layer(test::random_weights(c, 2), more, 1),
                       doctest::Contains("'model.layers.1.mlp.gate.weight' has shape [4, 16] but config.json implies [5, 16]"),
                       model_error);
  forward_config qk = c;
  qk.qk_norm = true;
  CHECK_THROWS_WITH_AS(load_layer(test::random_weights(c, 2), qk, 0),
                       doctest::Contains("checkpoint has no tensor 'model.layers.0.self_attn.q_norm.weight'"), model_error);
}

TEST_CASE("token files: wrong dtype, missing tensor and ids outside the vocabulary name the file and tensor") {
  const auto dir = std::filesystem::path(PQ_MODELS_DIR) / "tiny-llama-code";
  if (!std::filesystem::exists(dir / "tokens.safetensors")) {
    MESSAGE("skipped: " << dir.string() << " is absent");
    return;
  }
  const auto file = dir / "tokens.safetensors";
  CHECK_THROWS_WITH_AS(load_tokens(file, "ref_logits", 8192),
                       doctest::Contains("tokens.safetensors:ref_logits: token tensor has dtype F32, expected I32 or I64"),
                       model_error);
  CHECK_THROWS_WITH_AS(load_tokens(file, "train", 8192), doctest::Contains("no tensor 'train'"), model_error);
  CHECK_THROWS_WITH_AS(load_tokens(file, "eval", 100), doctest::Contains("is outside the vocabulary [0, 100)"), model_error);
  CHECK(load_tokens(file, "calib", 8192).sequences == 128);
}

TEST_CASE("a checkpoint whose tensors do not match its config.json is refused on open, naming the tensor") {
  const auto src = std::filesystem::path(PQ_MODELS_DIR) / "tiny-llama-code";
  if (!std::filesystem::exists(src / "config.json")) {
    MESSAGE("skipped: " << src.string() << " is absent");
    return;
  }
  const auto dir = std::filesystem::temp_directory_path() / "pq_model_test_mismatch";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  for (const char* f : {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "model.safetensors.index.json"})
    std::filesystem::create_symlink(src / f, dir / f);
  auto config = pq::io::read_json_file(src / "config.json");
  config["intermediate_size"] = 1000;
  std::ofstream(dir / "config.json") << config.dump();
  CHECK_THROWS_WITH_AS(source_model{dir},
                       doctest::Contains("tensor 'model.layers.0.mlp.gate_proj.weight' has shape [1024, 384] but "
                                         "config.json implies [1000, 384]"),
                       model_error);
  config["intermediate_size"] = 1024;
  config["num_hidden_layers"] = 7;
  std::ofstream(dir / "config.json") << config.dump();
  CHECK_THROWS_WITH_AS(source_model{dir}, doctest::Contains("no tensor 'model.layers.6.input_layernorm.weight'"), model_error);
  std::filesystem::remove_all(dir);
}
