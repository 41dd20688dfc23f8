// compressed-tensors export of both test models, uniformly in every exportable format: the exact tensor set
// of spec section 3 per Linear, every other tensor copied byte for byte, one NVFP4 global scale per decision
// unit, targets that resolve every Linear and vLLM's fused names, and the weights read back by pq's decoder
// within each format's rounding bound of the source. Plus the refusals: existing output, source as output,
// unexportable formats, mixed units; nothing partial left behind.
#include <pq/io/export.hpp>

#include <pq/formats/bundle.hpp>
#include <pq/quant/rtn.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using namespace pq;

namespace {

struct expected_tensor {
  std::string suffix;
  dtype type;
  std::vector<std::int64_t> shape;
};

// Spec section 3 tables, per format, for an [n, k] bf16 Linear.
std::vector<expected_tensor> spec_tensors(const std::string& f, std::int64_t n, std::int64_t k) {
  if (f == "NVFP4" || f == "NVFP4A16") {
    std::vector<expected_tensor> t{{"weight_packed", dtype::U8, {n, k / 2}},
                                   {"weight_scale", dtype::F8_E4M3, {n, k / 16}},
                                   {"weight_global_scale", dtype::F32, {1}}};
    if (f == "NVFP4") t.push_back({"input_global_scale", dtype::F32, {1}});
    return t;
  }
  if (f == "MXFP4") return {{"weight_packed", dtype::U8, {n, k / 2}}, {"weight_scale", dtype::U8, {n, k / 32}}};
  if (f == "MXFP8_E4M3") return {{"weight", dtype::F8_E4M3, {n, k}}, {"weight_scale", dtype::U8, {n, k / 32}}};
  if (f == "FP8_CHANNEL") return {{"weight", dtype::F8_E4M3, {n, k}}, {"weight_scale", dtype::BF16, {n, 1}}};
  if (f == "INT8_CHANNEL")
    return {{"weight_packed", dtype::I32, {n, k / 4}}, {"weight_scale", dtype::BF16, {n, 1}}, {"weight_shape", dtype::I64, {2}}};
  std::vector<expected_tensor> t{
      {"weight_packed", dtype::I32, {n, k / 8}}, {"weight_scale", dtype::BF16, {n, k / 128}}, {"weight_shape", dtype::I64, {2}}};
  if (f == "INT4_G128_ASYM") t.push_back({"weight_zero_point", dtype::I32, {(n + 7) / 8, k / 128}});
  return t;
}

// Worst-case |w - decode(w)| of round-to-nearest for an element of a group with largest magnitude a (range
// hi - lo for asymmetric) in a decision unit with largest magnitude u, from the scale rules of the spec:
//  NVFP4: s = E4M3(a/6) within 1/16 -> half the widest E2M1 gap (1) or clipping at 6: <= a/6 * 17/16, plus the
//         E4M3 subnormal step (2^-9 / g, g = 2688/u) when the block is tiny against the unit;
//  MXFP4: power-of-two scale X with a/X in [3.5, 7): max(X, a - 6X) <= a/3.5;
//  MXFP8 / FP8 channel: E4M3 relative half-step 2^-4 (scales leave no clipping beyond that);
//  INT symmetric: half a step of a/7.5 (a/127.5), the BF16 scale rounded up; asymmetric: a step of range/15.
double rounding_bound(const std::string& f, double a, double range, double u) {
  const double bf16_up = 1.0 + 1.0 / 128;
  if (f == "NVFP4" || f == "NVFP4A16") return a / 6 * 17 / 16 + 6 * std::ldexp(1.0, -9) * u / 2688;
  if (f == "MXFP4") return a / 3.5;
  if (f == "MXFP8_E4M3") return a / 16 + 1e-30;
  if (f == "FP8_CHANNEL") return a / 16 * (1 + 1.0 / 256) + std::ldexp(1.0, -7) * std::ldexp(1.0, -10);
  if (f == "INT8_CHANNEL") return a / 127.5 / 2 * bf16_up;
  if (f == "INT4_G128") return a / 7.5 / 2 * bf16_up;
  return range / 15 * bf16_up;  // INT4_G128_ASYM: half a step, plus up to half a step from the rounded zero point
}

std::int64_t group_width(const std::string& f, std::int64_t k) {
  if (f == "NVFP4" || f == "NVFP4A16") return 16;
  if (f == "MXFP4" || f == "MXFP8_E4M3") return 32;
  if (f == "INT4_G128" || f == "INT4_G128_ASYM") return 128;
  return k;
}

std::vector<std::string> exportable_formats() {
  std::vector<std::string> names;
  all_formats::for_each([&](auto t) {
    using F = typename decltype(t)::type;
    if constexpr (F::scheme.has_value() && is_roundable<F>) names.emplace_back(F::name);  // FP8_SOURCE: test_fp8_source_export
  });
  return names;
}

bool same_bytes(const io::tensor_view& a, const io::tensor_view& b) {
  return a.type == b.type && a.shape == b.shape && std::equal(a.data.begin(), a.data.end(), b.data.begin(), b.data.end());
}

float read_f32(const io::tensor_view& t) {
  float v;
  std::memcpy(&v, t.data.data(), 4);
  return v;
}

// The input amax a calibration would give unit u (any distinct positive value per unit will do here).
float fake_input_amax(std::size_t u) { return 1.0f + 0.25f * static_cast<float>(u % 7); }

// Exports `dir` with every Linear in `format` by round-to-nearest, one tensor scale per decision unit.
void export_uniform(const io::model_dir& src, const arch::profile& prof, const std::string& format, const fs::path& out,
                    io::export_options opt = {}) {
  io::ct_export exporter(src, prof, std::vector<std::string>(prof.linears.size(), format), out, opt);
  visit_format(format, [&](auto f) {
    using F = decltype(f);
    for (std::size_t u = 0; u < prof.units.size(); ++u) {
      std::vector<std::vector<float>> w;
      float amax = 0;
      for (int m : prof.units[u].members) {
        w.push_back(io::to_float(src.tensor(prof.linears[static_cast<std::size_t>(m)].name + ".weight")));
        amax = std::max(amax, weight_amax(w.back()));
      }
      for (std::size_t i = 0; i < w.size(); ++i) {
        const auto& l = prof.linears[static_cast<std::size_t>(prof.units[u].members[i])];
        const auto q = quantize_rtn<F>(w[i], l.rows, l.cols, F::tensor_scale(amax));
        exporter.write_linear(static_cast<std::size_t>(prof.units[u].members[i]), pack(q, fake_input_amax(u)));
      }
    }
  });
  exporter.finish();
}

fs::path models() { return fs::path(PQ_MODELS_DIR); }
bool have(const std::string& name) {
  if (fs::exists(models() / name / "config.json")) return true;
  MESSAGE("SKIPPED: " << (models() / name).string() << " not found");
  return false;
}

// The module names vLLM asks the quantization_config about for a unit: its members and the fused name.
std::vector<std::string> vllm_names(const arch::profile& p, const arch::decision_unit& u) {
  std::vector<std::string> names;
  for (int m : u.members) names.push_back(p.linears[static_cast<std::size_t>(m)].name);
  if (u.members.size() > 1) names.push_back(u.name);  // ...qkv_proj, ...gate_up_proj, ...mlp.experts
  return names;
}

std::size_t matching_targets(const nlohmann::json& qc, const std::string& module) {
  std::size_t hits = 0;
  for (const auto& [key, group] : qc["config_groups"].items())
    for (const auto& t : group["targets"]) {
      const auto s = t.get<std::string>();
      REQUIRE(s.starts_with("re:"));
      REQUIRE(s.ends_with("$"));
      if (std::regex_search(module, std::regex(s.substr(3)), std::regex_constants::match_continuous)) ++hits;
    }
  return hits;
}

void check_export(const fs::path& model, const std::string& format) {
  const std::string model_name = model.filename().string();
  CAPTURE(model_name);
  CAPTURE(format);
  const auto src = io::model_dir::open(model);
  const auto prof = arch::make_profile(arch::parse_config(src.config_json(), "config.json"));
  const fs::path out = fs::temp_directory_path() / ("pq_test_export_" + model_name + "_" + format);
  fs::remove_all(out);
  export_uniform(src, prof, format, out, {.max_shard_bytes = 4u << 20, .force = false});

  // Files: config, index and shards, and everything else of the source copied through.
  for (const auto& e : fs::directory_iterator(src.path())) {
    const auto name = e.path().filename().string();
    if (name.ends_with(".safetensors")) continue;  // weights are rewritten; other safetensors files would be globbed by vLLM
    if (name == "model.safetensors.index.json") continue;
    CHECK_MESSAGE(fs::exists(out / name), name);
  }
  for (const auto& e : fs::directory_iterator(out.parent_path()))
    CHECK_FALSE(e.path().filename().string().starts_with("." + out.filename().string() + ".pq-tmp"));

  const auto ct = io::ct_checkpoint::open(out);
  const auto& qc = ct.dir.config_json()["quantization_config"];
  CHECK(qc["quant_method"] == "compressed-tensors");
  CHECK(qc["config_groups"].size() == 1);
  CHECK(qc["format"] == qc["config_groups"]["group_0"]["format"]);
  std::set<std::string> ignore;
  for (const auto& i : qc["ignore"]) ignore.insert(i.get<std::string>());
  CHECK(ignore.contains("lm_head"));
  CHECK(ignore == std::set<std::string>(prof.unquantized_linears.begin(), prof.unquantized_linears.end()));
  for (const auto& u : prof.units)
    for (const auto& name : vllm_names(prof, u)) CHECK_MESSAGE(matching_targets(qc, name) == 1, name);
  for (const auto& name : prof.unquantized_linears) CHECK_MESSAGE(matching_targets(qc, name) == 0, name);
  // vLLM's MTP draft names its layers mtp.layers.<m> and reads this config: they are exported as stored.
  for (const int m : {0, 1, 3})
    for (const std::string module : {"self_attn.qkv_proj", "mlp.experts", "mlp.gate_up_proj", "linear_attn.in_proj_qkvz"}) {
      const std::string name = "mtp.layers." + std::to_string(m) + "." + module;
      CHECK_MESSAGE(matching_targets(qc, name) == 0, name);
      CHECK_MESSAGE(matching_targets(qc, "model." + name) == 0, name);
    }
  CHECK(std::all_of(ct.formats.begin(), ct.formats.end(), [&](const std::string& f) { return f == format; }));

  // Tensor set: exactly the scheme's tensors for each Linear, every other source tensor unchanged.
  std::set<std::string> expected_names;
  for (const auto& l : prof.linears)
    for (const auto& t : spec_tensors(format, l.rows, l.cols)) {
      const std::string name = l.name + "." + t.suffix;
      expected_names.insert(name);
      REQUIRE_MESSAGE(ct.dir.has(name), name);
      const auto& v = ct.dir.tensor(name);
      CHECK_MESSAGE(v.type == t.type, name);
      CHECK_MESSAGE(v.shape == t.shape, name);
      if (t.suffix == "weight_shape") {
        std::int64_t nk[2];
        std::memcpy(nk, v.data.data(), 16);
        CHECK(nk[0] == l.rows);
        CHECK(nk[1] == l.cols);
      }
    }
  // Experts stored packed are written per expert: their packed tensors are replaced too.
  std::set<std::string> replaced;
  for (const auto& l : prof.linears) {
    replaced.insert(l.name + ".weight");
    if (const auto packed = src.packed_source(l.name + ".weight")) replaced.insert(*packed);
  }
  for (const auto& name : src.tensor_names()) {
    if (replaced.contains(name)) continue;
    expected_names.insert(name);
    REQUIRE_MESSAGE(ct.dir.has(name), name);
    CHECK_MESSAGE(same_bytes(ct.dir.tensor(name), src.tensor(name)), name);
  }
  const auto names = ct.dir.tensor_names();
  CHECK(std::set<std::string>(names.begin(), names.end()) == expected_names);

  // Global scales: one per decision unit, 448*6 / unit amax, identical across siblings.
  const bool global = format == "NVFP4" || format == "NVFP4A16";
  double worst_ratio = 0;  // largest |error| / bound seen
  for (std::size_t u = 0; u < prof.units.size(); ++u) {
    const auto& unit = prof.units[u];
    std::vector<std::vector<float>> w;
    double unit_amax = 0;
    for (int m : unit.members) {
      w.push_back(io::to_float(src.tensor(prof.linears[static_cast<std::size_t>(m)].name + ".weight")));
      for (float x : w.back()) unit_amax = std::max(unit_amax, double(std::fabs(x)));
    }
    if (global) {
      const std::string first = prof.linears[static_cast<std::size_t>(unit.members[0])].name;
      const float g = read_f32(ct.dir.tensor(first + ".weight_global_scale"));
      CHECK(g == doctest::Approx(2688.0 / unit_amax).epsilon(1e-6));
      for (int m : unit.members) {
        const auto& l = prof.linears[static_cast<std::size_t>(m)];
        CHECK_MESSAGE(read_f32(ct.dir.tensor(l.name + ".weight_global_scale")) == g, l.name);
        if (format == "NVFP4") {
          CHECK_MESSAGE(read_f32(ct.dir.tensor(l.name + ".input_global_scale")) ==
                            read_f32(ct.dir.tensor(first + ".input_global_scale")), l.name);
          CHECK(read_f32(ct.dir.tensor(l.name + ".input_global_scale")) ==
                doctest::Approx(2688.0 / fake_input_amax(u)).epsilon(1e-6));
        }
      }
    }
    // Decoded weights within the format's rounding bound of the source, group by group.
    for (std::size_t i = 0; i < unit.members.size(); ++i) {
      const auto& l = prof.linears[static_cast<std::size_t>(unit.members[i])];
      const std::vector<float> back = ct.weight(static_cast<std::size_t>(unit.members[i]));
      REQUIRE(back.size() == w[i].size());
      const std::int64_t gw = group_width(format, l.cols);
      bool ok = true;
      for (std::int64_t r = 0; r < l.rows && ok; ++r)
        for (std::int64_t g0 = 0; g0 < l.cols; g0 += gw) {
          const float* x = w[i].data() + r * l.cols + g0;
          const float* y = back.data() + r * l.cols + g0;
          double a = 0, lo = 0, hi = 0, err = 0;
          for (std::int64_t c = 0; c < gw; ++c) {
            a = std::max(a, double(std::fabs(x[c])));
            lo = std::min(lo, double(x[c]));
            hi = std::max(hi, double(x[c]));
            err = std::max(err, std::fabs(double(x[c]) - y[c]));
          }
          const double bound = rounding_bound(format, a, hi - lo, unit_amax);
          worst_ratio = std::max(worst_ratio, err / bound);
          if (!(err <= bound)) {
            FAIL_CHECK(l.name << " row " << r << " group " << g0 / gw << ": error " << err << " > bound " << bound);
            ok = false;
            break;
          }
        }
    }
  }
  MESSAGE(model_name << " " << format << ": worst error / bound = " << worst_ratio);
  fs::remove_all(out);
}

}  // namespace

TEST_CASE("both test models export uniformly in every exportable format and decode within the format's bound") {
  const auto formats = exportable_formats();
  CHECK(formats.size() == 8);  // NVFP4, NVFP4A16, MXFP4, MXFP8_E4M3, FP8_CHANNEL, INT4_G128(_ASYM), INT8_CHANNEL
  for (const std::string model : {"tiny-llama-code", "tiny-qwen2moe-code"}) {
    if (!have(model)) continue;
    for (const auto& f : formats) check_export(models() / model, f);
  }
}

fs::path hybrid_model() { return fs::path(PQ_SOURCE_DIR) / "tests" / "models" / "tiny-qwen3_5moe-code"; }

TEST_CASE("tiny-qwen3_5moe-code (experts packed as released) exports per expert in every exportable format") {
  const auto src = io::model_dir::open(hybrid_model());
  std::size_t packed = 0;
  for (const auto& name : src.tensor_names())
    if (name.ends_with(".experts.gate_up_proj") || name.ends_with(".experts.down_proj")) ++packed;
  CHECK(packed == 2 * 5);  // 4 decoder layers and the MTP layer
  // The formats every Linear's shape admits (the experts' down_proj has 64 columns: no INT4 group of 128).
  const auto prof = arch::make_profile(arch::parse_config(src.config_json(), "config.json"));
  std::size_t exported = 0;
  for (const auto& f : exportable_formats()) {
    const bool fits = visit_format(f, [&](auto fmt) {
      return std::all_of(prof.linears.begin(), prof.linears.end(),
                         [](const auto& l) { return accepts<decltype(fmt)>(l.rows, l.cols); });
    });
    if (!fits) continue;
    check_export(hybrid_model(), f);
    ++exported;
  }
  CHECK(exported == 6);  // all but the two INT4_G128 formats
}

TEST_CASE("packed experts kept in BF16 are written per expert, byte for byte the slices of the packed tensors") {
  const auto src = io::model_dir::open(hybrid_model());
  const auto prof = arch::make_profile(arch::parse_config(src.config_json(), "config.json"));
  std::vector<std::string> formats(prof.linears.size(), "NVFP4");
  std::vector<std::string> experts;
  for (const auto& u : prof.units)
    if (u.name.ends_with("mlp.experts") && u.name.find(".layers.0.") == std::string::npos)  // layer 0: NVFP4 experts
      for (int m : u.members) {
        formats[static_cast<std::size_t>(m)] = "BF16";
        experts.push_back(prof.linears[static_cast<std::size_t>(m)].name);
      }
  REQUIRE(experts.size() == 3 * 8 * 3);
  const fs::path out = fs::temp_directory_path() / "pq_test_export_packed_bf16";
  fs::remove_all(out);
  {
    io::ct_export exporter(src, prof, formats, out, {.max_shard_bytes = 4u << 20, .force = false});
    visit_format("NVFP4", [&](auto f) {
      using F = decltype(f);
      for (std::size_t i = 0; i < prof.linears.size(); ++i) {
        if (formats[i] != "NVFP4") continue;
        const auto& l = prof.linears[i];
        const auto w = io::to_float(src.tensor(l.name + ".weight"));
        exporter.write_linear(i, pack(quantize_rtn<F>(w, l.rows, l.cols, F::tensor_scale(weight_amax(w))), 1.0f));
      }
    });
    exporter.finish();
  }
  const auto dir = io::model_dir::open(out);
  for (const auto& e : experts) {
    REQUIRE_MESSAGE(dir.tensor_names().end() !=
                        std::find(dir.tensor_names().begin(), dir.tensor_names().end(), e + ".weight"), e);
    CHECK_MESSAGE(same_bytes(dir.tensor(e + ".weight"), src.tensor(e + ".weight")), e);
  }
  for (const auto& name : dir.tensor_names()) {
    const bool packed = name.ends_with(".experts.gate_up_proj") || name.ends_with(".experts.down_proj");
    CHECK_MESSAGE((!packed || name.starts_with("mtp.")), name);  // the MTP layer's experts, not in the profile
  }
  // The source's bytes of one expert, independently of model_dir's slicing: expert 5's up_proj is rows
  // [5*2I + I, 5*2I + 2I) of layer 1's gate_up_proj [E, 2I, H].
  const std::string layer1 = "model.language_model.layers.1.mlp.experts.";
  const auto& packed_t = src.tensor(layer1 + "gate_up_proj");
  const std::int64_t I = packed_t.shape[1] / 2, H = packed_t.shape[2];
  const auto& up5 = dir.tensor(layer1 + "5.up_proj.weight");
  REQUIRE(up5.shape == std::vector<std::int64_t>{I, H});
  CHECK(std::equal(up5.data.begin(), up5.data.end(), packed_t.data.begin() + (5 * 2 * I + I) * H * 2));
  fs::remove_all(out);
}

TEST_CASE("export refusals leave nothing behind and never touch the source") {
  if (!have("tiny-llama-code")) return;
  const auto src = io::model_dir::open(models() / "tiny-llama-code");
  const auto prof = arch::make_profile(arch::parse_config(src.config_json(), "config.json"));
  const auto listing = [](const fs::path& d) {
    std::vector<std::pair<std::string, std::uintmax_t>> v;
    for (const auto& e : fs::directory_iterator(d)) v.emplace_back(e.path().filename().string(), e.is_regular_file() ? e.file_size() : 0);
    std::sort(v.begin(), v.end());
    return v;
  };
  const auto before = listing(src.path());
  const fs::path root = fs::temp_directory_path() / "pq_test_export_refusals";
  fs::remove_all(root);
  fs::create_directories(root / "exists");
  std::ofstream(root / "exists" / "keep") << "x";
  const std::vector<std::string> int8(prof.linears.size(), "INT8_CHANNEL");

  CHECK_THROWS_WITH_AS(io::ct_export(src, prof, int8, root / "exists"), doctest::Contains("exists: output directory exists"),
                       io::export_error);
  CHECK(fs::exists(root / "exists" / "keep"));
  CHECK_THROWS_WITH_AS(io::ct_export(src, prof, int8, src.path(), {.force = true}),
                       doctest::Contains("is the source model"), io::export_error);
  CHECK_THROWS_WITH_AS(io::ct_export(src, prof, std::vector<std::string>(prof.linears.size(), "MXFP6_E3M2"), root / "a"),
                       doctest::Contains("MXFP6_E3M2 has no compressed-tensors scheme"), io::export_error);
  auto mixed = int8;
  mixed[prof.units[0].members[1]] = "INT4_G128";
  CHECK_THROWS_WITH_AS(io::ct_export(src, prof, mixed, root / "a"), doctest::Contains("mixes formats"), io::export_error);
  CHECK_THROWS_WITH_AS(io::ct_export(src, prof, std::vector<std::string>(3, "BF16"), root / "a"),
                       doctest::Contains("one format per Linear"), io::export_error);
  {  // abandoned half way (a Linear never written): an error at finish, and no directory at all
    io::ct_export e(src, prof, int8, root / "a");
    CHECK_THROWS_WITH_AS(e.finish(), doctest::Contains("was never written"), io::export_error);
  }
  CHECK_FALSE(fs::exists(root / "a"));
  std::size_t entries = 0;
  for (const auto& e : fs::directory_iterator(root)) entries += e.path().filename() != "exists";
  CHECK(entries == 0);

  // --force replaces an existing directory with the complete export.
  export_uniform(src, prof, "INT8_CHANNEL", root / "exists", {.force = true});
  CHECK_FALSE(fs::exists(root / "exists" / "keep"));
  CHECK(fs::exists(root / "exists" / "config.json"));
  CHECK(listing(src.path()) == before);
  fs::remove_all(root);
}

TEST_CASE("a source weight missing, of the wrong shape or of an integer dtype is one error naming it") {
  const fs::path root = fs::temp_directory_path() / "pq_test_export_bad_source";
  fs::remove_all(root);
  fs::create_directories(root / "model");
  std::ofstream(root / "model" / "config.json")
      << R"({"model_type":"llama","hidden_size":128,"intermediate_size":256,"num_hidden_layers":1,)"
      << R"("num_attention_heads":2,"num_key_value_heads":2,"vocab_size":32})";
  const auto write_q = [&](dtype t, std::vector<std::int64_t> shape) {
    io::tensor_decl d{"model.layers.0.self_attn.q_proj.weight", t, std::move(shape)};
    io::safetensors_writer w(root / "model" / "model.safetensors", {d});
    w.write(d.name, std::vector<std::byte>(d.bytes()));
    w.close();
  };
  const auto attempt = [&] {
    const auto src = io::model_dir::open(root / "model");
    const auto prof = arch::make_profile(arch::parse_config(src.config_json(), "config.json"));
    io::ct_export e(src, prof, std::vector<std::string>(prof.linears.size(), "INT8_CHANNEL"), root / "out");
  };
  write_q(dtype::BF16, {128, 64});
  CHECK_THROWS_WITH_AS(attempt(), doctest::Contains("q_proj.weight has shape [128, 64] but config.json implies [128, 128]"),
                       io::export_error);
  write_q(dtype::I8, {128, 128});
  CHECK_THROWS_WITH_AS(attempt(), doctest::Contains("q_proj.weight has dtype I8"), io::export_error);
  write_q(dtype::BF16, {128, 128});
  CHECK_THROWS_WITH_AS(attempt(), doctest::Contains("k_proj.weight is missing"), io::export_error);
  CHECK_FALSE(fs::exists(root / "out"));
  fs::remove_all(root);
}
