// Both test models exported uniformly in every exportable format, read back through pq's reader: the exact
// tensor set of each scheme, values within each format's error bound, one global scale per decision unit,
// and targets that vLLM resolves for unfused and fused module names alike.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <regex>
#include <set>

#include <pq/io/export.hpp>
#include <pq/quant/rtn.hpp>

namespace fs = std::filesystem;
using namespace pq;

namespace {
// Largest relative RMS error a format's RTN may have on trained weights (half a grid step of a
// normalised Gaussian, with margin): a loose bound that catches a wrong layout or scale at once.
double rms_bound(std::string_view f) {
  if (f == "NVFP4" || f == "NVFP4A16" || f == "MXFP4" || f == "INT4_G128" || f == "INT4_G128_ASYM") return 0.2;
  return 0.05;  // 8-bit formats
}

template <Format F>
void export_uniform(const fs::path& src_dir, const fs::path& out) {
  const auto dir = io::model_dir::open(src_dir);
  const auto p = model::make_profile(model::parse_config(dir.config_json(), "config.json"));
  std::vector<std::string> formats(p.linears.size(), std::string(F::name));
  io::export_options eo;
  eo.force = true;
  eo.max_shard_bytes = 4 << 20;  // several shards and an index
  io::ct_export ex(dir, p, formats, out, eo);
  for (const auto& u : p.units) {
    float amax = 0;
    for (int m : u.members) amax = std::max(amax, weight_amax(io::to_float(dir.tensor(p.linears[m].name + ".weight"))));
    for (int m : u.members) {
      const auto& l = p.linears[static_cast<std::size_t>(m)];
      const auto w = io::to_float(dir.tensor(l.name + ".weight"));
      ex.write_linear(static_cast<std::size_t>(m), pack(quantize_rtn<F>(w, l.rows, l.cols, F::tensor_scale(amax)), 3.0f));
    }
  }
  ex.finish();
}

template <Format F>
void check_export(const fs::path& src_dir, const fs::path& out) {
  const auto src = io::model_dir::open(src_dir);
  const auto ck = io::ct_checkpoint::open(out);
  const auto& p = ck.profile;
  REQUIRE(ck.formats.size() == p.linears.size());
  std::set<std::string> names;
  for (const auto& n : ck.dir.tensor_names()) names.insert(n);
  for (std::size_t i = 0; i < p.linears.size(); ++i) {
    const auto& l = p.linears[i];
    CHECK(ck.formats[i] == F::name);
    // exactly the scheme's tensors (plus a bias where the source has one), nothing else
    std::set<std::string> expect, got;
    for (const auto& t : F::stored_tensors(l.rows, l.cols)) expect.insert(l.name + "." + std::string(t.suffix));
    if (src.has(l.name + ".bias")) expect.insert(l.name + ".bias");
    for (auto it = names.lower_bound(l.name + "."); it != names.end() && it->rfind(l.name + ".", 0) == 0; ++it) got.insert(*it);
    CHECK(got == expect);
    for (const auto& t : F::stored_tensors(l.rows, l.cols)) {
      const auto& v = ck.dir.tensor(l.name + "." + std::string(t.suffix));
      CHECK(v.type == t.type);
    }
    // values within the format's error bound of the source
    const auto w = io::to_float(src.tensor(l.name + ".weight"));
    const auto d = ck.weight(i);
    double err = 0, ref = 0;
    for (std::size_t k = 0; k < w.size(); ++k) {
      err += (double(w[k]) - d[k]) * (double(w[k]) - d[k]);
      ref += double(w[k]) * w[k];
    }
    CHECK(std::sqrt(err / ref) < rms_bound(F::name));
  }
  if constexpr (F::has_tensor_scale) {  // one global scale per decision unit, shared by every member
    for (const auto& u : p.units) {
      std::set<float> g;
      for (int m : u.members) {
        const auto& t = ck.dir.tensor(p.linears[static_cast<std::size_t>(m)].name + ".weight_global_scale");
        float v;
        std::memcpy(&v, t.data.data(), 4);
        g.insert(v);
      }
      CHECK(g.size() == 1);
    }
  }
  // Non-Linear tensors are copied byte for byte.
  for (const auto& n : {"model.embed_tokens.weight", "model.norm.weight", "model.layers.0.input_layernorm.weight"}) {
    const auto& a = src.tensor(n);
    const auto& b = ck.dir.tensor(n);
    CHECK(std::equal(a.data.begin(), a.data.end(), b.data.begin(), b.data.end()));
  }
  CHECK(fs::exists(out / "tokenizer.json"));
  CHECK(fs::exists(out / "model.safetensors.index.json"));
}
}  // namespace

TEST_CASE_TEMPLATE("uniform export of the test models, read back", F, NVFP4, NVFP4A16, MXFP4, MXFP8_E4M3, FP8_CHANNEL,
                   INT4_G128, INT4_G128_ASYM, INT8_CHANNEL) {
  const fs::path models(PQ_MODELS_DIR);
  if (!fs::exists(models / "tiny-llama-code")) {
    MESSAGE("SKIPPED: " << PQ_MODELS_DIR << " not found");
    return;
  }
  for (const std::string name : {"tiny-llama-code", "tiny-qwen2moe-code"}) {
    CAPTURE(name);
    const fs::path out = fs::temp_directory_path() / ("pq_test_export_" + std::to_string(::getpid()));
    export_uniform<F>(models / name, out);
    check_export<F>(models / name, out);
    fs::remove_all(out);
  }
}

TEST_CASE("targets resolve vLLM's fused and expert module names to the unit's format only") {
  const fs::path root(PQ_MODELS_DIR);
  if (!fs::exists(root / "tiny-qwen2moe-code")) return;
  const auto dir = io::model_dir::open(root / "tiny-qwen2moe-code");
  const auto p = model::make_profile(model::parse_config(dir.config_json(), "config.json"));
  std::vector<std::string> f(p.linears.size(), "NVFP4A16");
  for (std::size_t i = 0; i < p.linears.size(); ++i)
    if (p.linears[i].layer == 1 && p.linears[i].expert < 0) f[i] = "MXFP8_E4M3";  // layer 1 attention + shared expert
  for (std::size_t i = 0; i < p.linears.size(); ++i)
    if (p.linears[i].layer == 2 && p.linears[i].name.find("self_attn") != std::string::npos) f[i] = "BF16";
  const auto qc = io::quantization_config(p, f);
  CHECK(qc["format"] == "mixed-precision");
  CHECK(io::formats_from_config(p, qc) == f);
  const auto format_of = [&](const std::string& module) -> std::string {
    for (auto it = qc["config_groups"].begin(); it != qc["config_groups"].end(); ++it)
      for (const auto& t : it.value()["targets"]) {
        const std::string s = t.get<std::string>();
        if (std::regex_search(module, std::regex(s.substr(3)), std::regex_constants::match_continuous))
          return it.value()["format"].get<std::string>();
      }
    return "none";
  };
  CHECK(format_of("model.layers.1.self_attn.qkv_proj") == "mxfp8-quantized");
  CHECK(format_of("model.layers.3.self_attn.qkv_proj") == "nvfp4-pack-quantized");
  CHECK(format_of("model.layers.1.mlp.shared_expert.gate_up_proj") == "mxfp8-quantized");
  CHECK(format_of("model.layers.1.mlp.experts.7.down_proj") == "nvfp4-pack-quantized");
  CHECK(format_of("model.layers.1.mlp.experts") == "nvfp4-pack-quantized");
  CHECK(format_of("model.layers.1.mlp.gate") == "none");  // the router is never a target
  CHECK(format_of("model.layers.11.self_attn.qkv_proj") == "none");
  std::set<std::string> ignore;
  for (const auto& i : qc["ignore"]) ignore.insert(i.get<std::string>());
  CHECK(ignore.contains("lm_head"));
  CHECK(ignore.contains("model.layers.1.mlp.gate"));
  CHECK(ignore.contains("model.layers.1.mlp.shared_expert_gate"));
  CHECK(ignore.contains("model.layers.2.self_attn.q_proj"));
  CHECK(ignore.contains("model.layers.2.self_attn.v_proj"));
}
