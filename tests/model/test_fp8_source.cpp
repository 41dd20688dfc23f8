// Block-FP8 source checkpoints (quant_method fp8, weight_block_size [128, 128]): pq's rounding and decode
// against the reference script of the published format (tests/io/fp8/make_fp8_block.py, digests in
// fp8_digests.txt), partial edge tiles, and the forward of an FP8 checkpoint equal to the forward of its
// dequantized weights.
#include <pq/arch/profile.hpp>
#include <pq/io/export.hpp>
#include <pq/io/fp8_block.hpp>
#include <pq/model/forward.hpp>
#include <pq/model/source_model.hpp>

#include <doctest/doctest.h>

#include "../io/fp8/fp8_copy.hpp"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

namespace fs = std::filesystem;
using namespace pq;

namespace {
std::uint64_t fnv1a(const void* p, std::size_t n) {
  std::uint64_t h = 0xCBF29CE484222325ull;
  for (std::size_t i = 0; i < n; ++i) h = (h ^ static_cast<const unsigned char*>(p)[i]) * 0x100000001B3ull;
  return h;
}
template <class T>
std::uint64_t fnv1a(const std::vector<T>& v) { return fnv1a(v.data(), v.size() * sizeof(T)); }

struct digest { std::uint64_t codes, scales, decoded; };
std::map<std::string, digest> script_digests() {
  std::ifstream in(fs::path(PQ_SOURCE_DIR) / "tests/io/fp8/fp8_digests.txt");
  REQUIRE(in);
  std::map<std::string, digest> out;
  std::string name, a, b, c;
  while (in >> name >> a >> b >> c) out[name] = {std::stoull(a, nullptr, 16), std::stoull(b, nullptr, 16), std::stoull(c, nullptr, 16)};
  return out;
}

// e4m3fn by its definition (OCP FP8: 1 sign, 4 exponent bits of bias 7, 3 mantissa bits, subnormals),
// not through pq's codec.
float e4m3_value(std::uint8_t c) {
  const int e = (c >> 3) & 15, m = c & 7;
  const float v = e == 0 ? std::ldexp(static_cast<float>(m), -9) : std::ldexp(static_cast<float>(8 + m), e - 10);
  return (c & 0x80) ? -v : v;
}
// The independent decode: W[i][j] = e4m3(code) * scale_inv[tile of (i, j)].
std::vector<float> decode(const io::fp8_block_weight& q, std::int64_t m, std::int64_t n) {
  const std::int64_t tiles_per_row = (n + 127) / 128;
  std::vector<float> w(static_cast<std::size_t>(m * n));
  for (std::int64_t i = 0; i < m; ++i)
    for (std::int64_t j = 0; j < n; ++j)
      w[static_cast<std::size_t>(i * n + j)] = e4m3_value(q.codes[static_cast<std::size_t>(i * n + j)]) *
                                               q.scale_inv[static_cast<std::size_t>((i / 128) * tiles_per_row + j / 128)];
  return w;
}

// The script's [200, 300] matrix of exact binary fractions: two by three tiles, the last ones partial.
std::vector<float> test_matrix() {
  std::vector<float> w;
  for (std::int64_t i = 0; i < 200; ++i)
    for (std::int64_t j = 0; j < 300; ++j)
      w.push_back(static_cast<float>(static_cast<double>((i * 131 + j * 71) % 257 - 128) / 64.0 * static_cast<double>(1 + i % 5)));
  return w;
}

const fs::path llama_dir = fs::path(PQ_MODELS_DIR) / "tiny-llama-code";
}  // namespace

TEST_CASE("pq's block-FP8 rounding and decode are the reference script's, partial edge tiles included") {
  const auto d = script_digests();
  const std::vector<float> w = test_matrix();
  const io::fp8_block_layout layout;
  const io::fp8_block_weight q = io::quantize_fp8_block(w.data(), 200, 300, layout);
  CHECK(layout.scale_shape(200, 300) == std::vector<std::int64_t>{2, 3});
  CHECK(fnv1a(q.codes) == d.at("test_matrix").codes);
  CHECK(fnv1a(q.scale_inv) == d.at("test_matrix").scales);
  const std::vector<float> back = decode(q, 200, 300);
  CHECK(fnv1a(back) == d.at("test_matrix").decoded);
  // e4m3 keeps 3 mantissa bits: every weight is within half a step (2^-4 relative) of its value, or
  // within half the smallest subnormal step of its tile.
  for (std::size_t k = 0; k < w.size(); ++k) {
    const float s = q.scale_inv[(k / 300 / 128) * 3 + (k % 300) / 128];
    CHECK(std::fabs(back[k] - w[k]) <= std::max(std::fabs(w[k]) / 16.0f, s * 0x1p-10f) * 1.0001f);
  }

  if (!fs::exists(llama_dir / "config.json")) {
    MESSAGE("skipped the checkpoint digests: " << llama_dir.string() << " is absent");
    return;
  }
  const auto dir = io::model_dir::open(llama_dir);
  const auto prof = arch::make_profile(arch::parse_config(dir.config_json(), "config.json"));
  int compared = 0;
  for (const auto& l : prof.linears) {
    CAPTURE(l.name);
    const std::vector<float> src = io::to_float(dir.tensor(l.name + ".weight"));
    const io::fp8_block_weight ql = io::quantize_fp8_block(src.data(), l.rows, l.cols, layout);
    const digest& ref = d.at(l.name + ".weight");
    CHECK(fnv1a(ql.codes) == ref.codes);
    CHECK(fnv1a(ql.scale_inv) == ref.scales);
    CHECK(fnv1a(decode(ql, l.rows, l.cols)) == ref.decoded);
    ++compared;
  }
  CHECK(compared == static_cast<int>(d.size()) - 1);  // every Linear the script quantized, and only those
}

TEST_CASE("an FP8 block-scaled source reproduces the logits of its dequantized weights") {
  if (!fs::exists(llama_dir / "config.json")) {
    MESSAGE("skipped: " << llama_dir.string() << " is absent");
    return;
  }
  // The FP8 copy of tiny-llama-code, as the script writes it (its bytes are the script's: test above).
  const fs::path out = fs::temp_directory_path() / "pq_test_fp8_source";
  fp8_testing::write_fp8_block_copy(llama_dir, out);
  // The reference: every tensor in fp32, the FP8 Linears decoded by this file's own decode of the same rounding.
  const auto src = io::model_dir::open(llama_dir);
  const auto prof = arch::make_profile(arch::parse_config(src.config_json(), "config.json"));
  const io::fp8_block_layout layout;
  model::memory_weights dequantized;
  for (const auto& name : src.tensor_names()) {
    const io::tensor_view& t = src.tensor(name);
    const std::string module = name.ends_with(".weight") ? name.substr(0, name.size() - 7) : "";
    if (const arch::linear_info* l = prof.find(module)) {
      const std::vector<float> w = io::to_float(t);
      dequantized.add(name, model::dense_tensor{t.shape, decode(io::quantize_fp8_block(w.data(), l->rows, l->cols, layout),
                                                                l->rows, l->cols)});
    } else {
      dequantized.add(name, model::dense_tensor{t.shape, io::to_float(t)});
    }
  }

  const model::source_model fp8(out);  // every tensor checked against config.json on open
  const auto tokens = io::safetensors_file::open(llama_dir / "tokens.safetensors");
  const auto& eval = tokens.at("eval");
  std::vector<std::int32_t> ids(32);
  for (int s = 0; s < 2; ++s) std::memcpy(ids.data() + 16 * s, eval.data.data() + s * eval.shape[1] * 4, 16 * 4);
  const auto batch = model::make_token_batch(std::vector<std::int64_t>{2, 16}, ids, fp8.shape().vocab, "eval[0:2, 0:16]");
  const model::matrix got = model::runner(fp8.weights(), fp8.shape()).logits(batch);
  const model::matrix want = model::runner(dequantized, fp8.shape()).logits(batch);
  CHECK(got.cwiseEqual(want).all());  // the same fp32 weights through the same forward: identical

  const std::vector<float> ref = io::to_float(tokens.at("ref_logits"));  // of the bf16 source
  double worst = 0;
  for (std::size_t i = 0; i < ref.size(); ++i) worst = std::max(worst, std::fabs(static_cast<double>(got.data()[i]) - ref[i]));
  MESSAGE("FP8 source vs the bf16 source's ref_logits: max |diff| = " << worst);
  CHECK(worst > 0);  // the FP8 weights are not the bf16 ones: the check above compared something

  // A scale that does not tile its weight is refused, naming the tensor.
  const io::tensor_view& w0 = fp8.dir().tensor("model.layers.0.self_attn.q_proj.weight");
  CHECK_THROWS_WITH_AS(io::dequantize_fp8_block(w0, fp8.dir().tensor("model.layers.0.self_attn.k_proj.weight_scale_inv"), layout),
                       doctest::Contains("k_proj.weight_scale_inv' has the wrong shape for 128x128 tiles of [384, 384]"),
                       io::format_error);
  // (Exporting from it: tests/io/test_fp8_source_export.cpp.)
  fs::remove_all(out);
}

TEST_CASE("an fp8 quantization_config pq cannot read is one clear error") {
  nlohmann::json c{{"quantization_config", {{"quant_method", "fp8"}, {"activation_scheme", "static"}}}};
  CHECK_THROWS_WITH_AS(io::fp8_block_layout_of(c, "m/config.json"),
                       doctest::Contains("m/config.json: fp8 quantization_config without a weight_block_size"), io::format_error);
  c["quantization_config"]["weight_block_size"] = {128, 128};
  c["quantization_config"]["fmt"] = "e5m2";
  CHECK_THROWS_WITH_AS(io::fp8_block_layout_of(c, "m/config.json"), doctest::Contains("fmt \"e5m2\" is not supported"),
                       io::format_error);
  CHECK_FALSE(io::fp8_block_layout_of(nlohmann::json{{"model_type", "llama"}}, "m/config.json").has_value());
}
