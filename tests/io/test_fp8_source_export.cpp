// Exports from a block-FP8 source (the FP8 copy of tiny-llama-code, tests/io/fp8/fp8_copy.hpp): Linears in
// FP8_SOURCE ship the source's codes and tile scales byte for byte, Linears in other formats (BF16 included) are
// quantized from the dequantized weights, config.json carries only the compressed-tensors quantization_config,
// and pq's reader decodes all of it back; FP8_SOURCE is unavailable for a dense source.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <pq/io/compressed_tensors.hpp>
#include <pq/io/export.hpp>
#include <pq/io/fp8_block.hpp>
#include <pq/model/forward.hpp>
#include <pq/model/quantized_weights.hpp>
#include <pq/model/source_model.hpp>
#include <pq/quant/rtn.hpp>

#include "fp8/fp8_copy.hpp"

namespace fs = std::filesystem;
using namespace pq;

namespace {
const fs::path fp8x_llama = fs::path(PQ_MODELS_DIR) / "tiny-llama-code";

bool fp8x_have() {
  if (fs::exists(fp8x_llama / "config.json")) return true;
  MESSAGE("SKIPPED: " << fp8x_llama.string() << " not found");
  return false;
}

// A scratch folder holding the FP8 copy of tiny-llama-code ("fp8"), removed at the end.
struct fp8x_scratch {
  fs::path root;
  explicit fp8x_scratch(const std::string& name) : root(fs::temp_directory_path() / ("pq_test_fp8x_" + name)) {
    fs::remove_all(root);
    fp8_testing::write_fp8_block_copy(fp8x_llama, root / "fp8");
  }
  ~fp8x_scratch() { fs::remove_all(root); }
  fs::path fp8() const { return root / "fp8"; }
};

bool fp8x_same_bytes(const io::tensor_view& a, const io::tensor_view& b) {
  return a.type == b.type && a.shape == b.shape && std::equal(a.data.begin(), a.data.end(), b.data.begin(), b.data.end());
}

// Unit u in FP8_SOURCE, NVFP4A16 or BF16 by u % 3: every kind in every layer's neighbourhood.
std::vector<std::string> fp8x_mixed(const arch::profile& p) {
  const char* menu[] = {"FP8_SOURCE", "NVFP4A16", "BF16"};
  std::vector<std::string> f(p.linears.size());
  for (std::size_t u = 0; u < p.units.size(); ++u)
    for (int m : p.units[u].members) f[static_cast<std::size_t>(m)] = menu[u % 3];
  return f;
}
}  // namespace

TEST_CASE("a mixed export from a block-FP8 source: FP8_SOURCE keeps the source's bytes, the rest its dequantized weights") {
  if (!fp8x_have()) return;
  const fp8x_scratch s("mixed");
  const auto src = io::model_dir::open(s.fp8());
  const auto prof = arch::make_profile(arch::parse_config(src.config_json(), "config.json"));
  const auto layout = io::fp8_block_layout_of(src.config_json(), "config.json");
  REQUIRE(layout == fp8_block_layout{128, 128});
  const std::vector<std::string> formats = fp8x_mixed(prof);

  std::vector<std::vector<float>> expected(prof.linears.size());  // what a reader must decode, per Linear
  io::ct_export ex(src, prof, formats, s.root / "out", {.max_shard_bytes = 4u << 20, .force = false});
  for (const auto& u : prof.units) {
    float amax = 0;
    for (int m : u.members)
      amax = std::max(amax, weight_amax(io::source_weight(src, layout, prof.linears[static_cast<std::size_t>(m)].name)));
    for (int m : u.members) {
      const auto i = static_cast<std::size_t>(m);
      const auto& l = prof.linears[i];
      const std::vector<float> w = io::source_weight(src, layout, l.name);  // the dequantized source weight
      CAPTURE(l.name);
      CHECK(ex.expects(i) == (formats[i] != "FP8_SOURCE"));  // every Linear of the copy is block FP8: BF16 rounds
      if (!ex.expects(i)) {
        expected[i] = w;  // W = e4m3(code) * tile scale, exactly the weights pq reads from the source
        continue;
      }
      visit_format(formats[i], [&](auto f) {
        using F = decltype(f);
        if constexpr (is_roundable<F>) {
          const auto q = quantize_rtn<F>(w, l.rows, l.cols, F::tensor_scale(amax));
          ex.write_linear(i, pack(q, 1.0f));
          expected[i] = dequantize(q);
        }
      });
    }
  }
  ex.finish();

  const auto out = io::model_dir::open(s.root / "out");
  CHECK(out.files().size() > 1);  // sharded: the kept tensors are written across shards like any other
  for (const auto& name : out.tensor_names()) CHECK_FALSE(name.ends_with("weight_scale_inv"));
  int kept = 0, bf16 = 0;
  for (std::size_t i = 0; i < prof.linears.size(); ++i) {
    const auto& l = prof.linears[i];
    CAPTURE(l.name);
    if (formats[i] == "FP8_SOURCE") {  // the source's codes, and its weight_scale_inv under compressed-tensors' name
      CHECK(fp8x_same_bytes(out.tensor(l.name + ".weight"), src.tensor(l.name + ".weight")));
      const io::tensor_view& scale = out.tensor(l.name + ".weight_scale");
      const io::tensor_view& scale_inv = src.tensor(l.name + ".weight_scale_inv");
      CHECK(scale.type == dtype::F32);
      CHECK(scale.shape == std::vector<std::int64_t>{(l.rows + 127) / 128, (l.cols + 127) / 128});
      CHECK(std::equal(scale.data.begin(), scale.data.end(), scale_inv.data.begin(), scale_inv.data.end()));
      ++kept;
    } else if (formats[i] == "BF16") {  // BF16 of the dequantized weights, in the ignore list
      const io::tensor_view& t = out.tensor(l.name + ".weight");
      CHECK(t.type == dtype::BF16);
      CHECK_FALSE(out.has(l.name + ".weight_scale"));
      const std::vector<float> w = io::source_weight(src, layout, l.name);
      bool all = true;
      for (std::size_t k = 0; k < w.size(); ++k) {
        std::uint16_t b;
        std::memcpy(&b, t.data.data() + 2 * k, 2);
        all = all && b == bf16::encode(w[k]);
      }
      CHECK(all);
      ++bf16;
    }
  }
  CHECK(kept > 0);
  CHECK(bf16 > 0);
  // Every tensor that is not a Linear's is the source's, byte for byte.
  for (const auto& name : src.tensor_names()) {
    const std::string module = name.substr(0, name.rfind('.'));
    if (prof.find(module)) continue;
    CAPTURE(name);
    CHECK(fp8x_same_bytes(out.tensor(name), src.tensor(name)));
  }
  // config.json: the compressed-tensors quantization_config replaced the source's fp8 one.
  const nlohmann::json& qc = out.config_json().at("quantization_config");
  CHECK(qc["quant_method"] == "compressed-tensors");
  CHECK(qc["format"] == "mixed-precision");
  CHECK_FALSE(qc.contains("weight_block_size"));
  CHECK_FALSE(qc.contains("fmt"));
  CHECK_FALSE(qc.contains("activation_scheme"));
  CHECK_FALSE(io::fp8_block_layout_of(out.config_json(), "out/config.json").has_value());

  // Read back: every Linear's format from the config groups and ignore list, every weight decoded exactly.
  const auto ct = io::ct_checkpoint::open(s.root / "out");
  CHECK(ct.formats == formats);
  for (std::size_t i = 0; i < prof.linears.size(); ++i) {
    CAPTURE(prof.linears[i].name);
    const std::vector<float> got = ct.weight(i);
    if (formats[i] == "BF16") {
      std::vector<float> want = expected[i];
      for (float& x : want) x = bf16::decode(bf16::encode(x));
      CHECK(got == want);
    } else {
      CHECK(got == expected[i]);
    }
  }
  fs::remove_all(s.root / "out");
}

TEST_CASE("FP8_SOURCE's config group is compressed-tensors' FP8_BLOCK scheme, field for field") {
  if (!fp8x_have()) return;
  const auto src = io::model_dir::open(fp8x_llama);  // the config group depends on the profile alone
  const auto prof = arch::make_profile(arch::parse_config(src.config_json(), "config.json"));
  const nlohmann::json qc = io::quantization_config(prof, std::vector<std::string>(prof.linears.size(), "FP8_SOURCE"));
  // shared/spec/compressed-tensors.md §3.4 FP8_BLOCK: weights block [128, 128], static; input group 128, dynamic
  // (compressed-tensors 0.20's preset FP8_BLOCK: the same values), every field pq writes spelled out.
  const nlohmann::json want = nlohmann::json::parse(R"({
    "format": "float-quantized",
    "input_activations": {"actorder": null, "block_structure": null, "dynamic": true, "group_size": 128,
      "num_bits": 8, "observer": null, "observer_kwargs": {}, "scale_dtype": null, "strategy": "group",
      "symmetric": true, "type": "float", "zp_dtype": null},
    "output_activations": null,
    "weights": {"actorder": null, "block_structure": [128, 128], "dynamic": false, "group_size": null,
      "num_bits": 8, "observer": "memoryless_minmax", "observer_kwargs": {}, "scale_dtype": null, "strategy": "block",
      "symmetric": true, "type": "float", "zp_dtype": null}})");
  REQUIRE(qc["config_groups"].size() == 1);
  nlohmann::json group = qc["config_groups"]["group_0"];
  CHECK(group["targets"].size() > 0);
  group.erase("targets");
  CHECK(group == want);
  CHECK(qc["format"] == "float-quantized");
  CHECK(io::format_of_group(want) == "FP8_SOURCE");  // and back
  CHECK(io::formats_from_config(prof, qc) == std::vector<std::string>(prof.linears.size(), "FP8_SOURCE"));
  // A channel FP8 group is not mistaken for it (the same format string, other weights).
  CHECK(io::format_of_group(io::quantization_config(prof, std::vector<std::string>(prof.linears.size(), "FP8_CHANNEL"))
                                ["config_groups"]["group_0"]) == "FP8_CHANNEL");
}

TEST_CASE("an export all in FP8_SOURCE is the source: the same bytes, and pq's forward of it equals the source's") {
  if (!fp8x_have()) return;
  const fp8x_scratch s("all");
  const model::source_model fp8(s.fp8());
  const auto& prof_config = fp8.config();
  const auto prof = model::make_profile(prof_config);
  {
    io::ct_export ex(fp8.dir(), prof, std::vector<std::string>(prof.linears.size(), "FP8_SOURCE"), s.root / "out");
    for (std::size_t i = 0; i < prof.linears.size(); ++i) CHECK_FALSE(ex.expects(i));  // nothing to round
    ex.finish();
  }
  const auto out = io::model_dir::open(s.root / "out");
  std::int64_t kept_bytes = 0;
  for (const auto& l : prof.linears)
    kept_bytes += static_cast<std::int64_t>(out.tensor(l.name + ".weight").data.size() + out.tensor(l.name + ".weight_scale").data.size());
  std::int64_t priced = 0;
  for (const auto& l : prof.linears) priced += resolve_format("FP8_SOURCE").stored_bytes(l.rows, l.cols);
  CHECK(kept_bytes == priced);  // what the allocator prices is what ships

  const io::ct_checkpoint ct = io::ct_checkpoint::open(s.root / "out");
  const model::quantized_weights back(ct);
  model::check_checkpoint(back, fp8.shape(), "the export");
  const auto tokens = io::safetensors_file::open(fp8x_llama / "tokens.safetensors");
  const auto& eval = tokens.at("eval");
  std::vector<std::int32_t> ids(48);
  for (int q = 0; q < 3; ++q) std::memcpy(ids.data() + 16 * q, eval.data.data() + q * eval.shape[1] * 4, 16 * 4);
  const auto batch = model::make_token_batch(std::vector<std::int64_t>{3, 16}, ids, fp8.shape().vocab, "eval[0:3, 0:16]");
  const model::matrix want = model::runner(fp8.weights(), fp8.shape()).logits(batch);
  const model::matrix got = model::runner(back, fp8.shape()).logits(batch);
  CHECK(got.cwiseEqual(want).all());
}

TEST_CASE("FP8_SOURCE is unavailable for a Linear the source stores dense, and an export asking for it is refused") {
  const format_traits t = resolve_format("FP8_SOURCE");
  CHECK(t.passthrough);
  CHECK(t.has_scheme);
  CHECK_FALSE(t.roundable);
  CHECK(t.keeps(fp8_block_layout{128, 128}));
  CHECK_FALSE(t.keeps(fp8_block_layout{64, 64}));  // another tile: not the scheme's block_structure
  CHECK_FALSE(t.available(std::nullopt));
  const format_traits b = resolve_format("BF16");
  CHECK(b.keeps(std::nullopt));
  CHECK_FALSE(b.keeps(fp8_block_layout{128, 128}));
  CHECK(b.available(fp8_block_layout{128, 128}));  // rounded: BF16 of the dequantized weight
  CHECK(resolve_format("NVFP4").available(fp8_block_layout{128, 128}));

  if (!fp8x_have()) return;
  const auto src = io::model_dir::open(fp8x_llama);
  const auto prof = arch::make_profile(arch::parse_config(src.config_json(), "config.json"));
  for (const auto& l : prof.linears) CHECK_FALSE(io::linear_encoding(src, std::nullopt, l.name).has_value());
  const fs::path out = fs::temp_directory_path() / "pq_test_fp8x_refused";
  fs::remove_all(out);
  CHECK_THROWS_WITH_AS(io::ct_export(src, prof, std::vector<std::string>(prof.linears.size(), "FP8_SOURCE"), out),
                       doctest::Contains("model.layers.0.self_attn.q_proj cannot be FP8_SOURCE, which keeps a Linear the "
                                         "source stores as block FP8 in 128x128 tiles; the source stores it as a dense weight"),
                       io::export_error);
  CHECK_FALSE(fs::exists(out));
  for (const auto& e : fs::directory_iterator(fs::temp_directory_path()))
    CHECK_FALSE(e.path().filename().string().starts_with(".pq_test_fp8x_refused"));  // no temporary left either
}
