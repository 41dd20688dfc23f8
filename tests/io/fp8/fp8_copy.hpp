// A block-FP8 copy of a bf16 checkpoint, as tests/io/fp8/make_fp8_block.py writes it: every Linear of the profile
// (the decoder layers' attention and MLP projections, the script's set) as F8_E4M3 `weight` + F32 `weight_scale_inv`
// [ceil(M/128), ceil(N/128)] by pq's reference rounding (whose bytes tests/model/test_fp8_source.cpp checks against
// the script's digests), every other tensor and file copied, config.json's quantization_config the releases' one.
#pragma once
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <pq/arch/profile.hpp>
#include <pq/arch/registry.hpp>
#include <pq/io/fp8_block.hpp>
#include <pq/io/model_dir.hpp>
#include <pq/io/safetensors.hpp>

namespace pq::fp8_testing {  // (not pq::test: the model area's pq::model::test would be ambiguous in a unity build)

inline void write_fp8_block_copy(const std::filesystem::path& from, const std::filesystem::path& out) {
  namespace fs = std::filesystem;
  const auto src = io::model_dir::open(from);
  const auto prof = arch::make_profile(arch::parse_config(src.config_json(), "config.json"));
  const io::fp8_block_layout layout;
  std::vector<io::tensor_decl> decls;
  std::map<std::string, std::vector<std::byte>> bytes;
  const auto as_bytes = [](const auto& v) {
    const auto* p = reinterpret_cast<const std::byte*>(v.data());
    return std::vector<std::byte>(p, p + v.size() * sizeof(v[0]));
  };
  for (const auto& name : src.tensor_names()) {
    const io::tensor_view& t = src.tensor(name);
    const std::string module = name.ends_with(".weight") ? name.substr(0, name.size() - 7) : "";
    if (const arch::linear_info* l = prof.find(module)) {
      const std::vector<float> w = io::to_float(t);
      const io::fp8_block_weight q = io::quantize_fp8_block(w.data(), l->rows, l->cols, layout);
      decls.push_back({name, dtype::F8_E4M3, t.shape});
      decls.push_back({module + ".weight_scale_inv", dtype::F32, layout.scale_shape(l->rows, l->cols)});
      bytes[name] = as_bytes(q.codes);
      bytes[module + ".weight_scale_inv"] = as_bytes(q.scale_inv);
    } else {
      decls.push_back({name, t.type, t.shape});
      bytes[name] = std::vector<std::byte>(t.data.begin(), t.data.end());
    }
  }
  fs::remove_all(out);
  fs::create_directories(out);
  {
    io::safetensors_writer w(out / "model.safetensors", decls, {{"format", "pt"}});
    for (const auto& [name, b] : bytes) w.write(name, b);
    w.close();
  }
  nlohmann::json config = src.config_json();
  config["quantization_config"] = {{"quant_method", "fp8"}, {"fmt", "e4m3"}, {"activation_scheme", "dynamic"},
                                   {"weight_block_size", {128, 128}}};
  std::ofstream(out / "config.json") << config.dump(2);
  for (const auto& e : fs::directory_iterator(from)) {
    const std::string f = e.path().filename().string();
    const bool weights = (f.ends_with(".safetensors") && f != "tokens.safetensors") || f == "model.safetensors.index.json";
    if (e.is_regular_file() && !weights && f != "config.json") fs::copy_file(e.path(), out / f);
  }
}

}  // namespace pq::fp8_testing
