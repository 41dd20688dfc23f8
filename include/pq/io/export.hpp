// pq/io/export.hpp: writes a compressed-tensors checkpoint: for every quantized Linear exactly the tensors
// its format stores, every other tensor copied unchanged (experts stored packed: per expert, see ct_export), config.json with quantization_config, the other
// files (tokenizer, generation_config) copied. Everything goes to a temporary directory beside the output,
// renamed into place only when complete; an export abandoned half way removes it. The source is only read.
#pragma once
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <vector>

#include <unistd.h>

#include <pq/error.hpp>
#include <pq/formats/bundle.hpp>
#include <pq/formats/quantized.hpp>
#include <pq/io/atomic_file.hpp>
#include <pq/io/compressed_tensors.hpp>
#include <pq/io/fp8_block.hpp>
#include <pq/io/model_dir.hpp>
#include <pq/arch/profile.hpp>

namespace pq::io {

struct export_options {
  std::uint64_t max_shard_bytes = 5ull << 30;
  bool force = false;  // replace an existing output directory
};

// Refuses an output that exists (unless forced) or that is the source itself.
inline void check_output_dir(const std::filesystem::path& out, const std::filesystem::path& source, bool force) {
  namespace fs = std::filesystem;
  if (fs::exists(out) && fs::exists(source) && fs::equivalent(out, source))
    throw export_error(out.string() + ": the output directory is the source model");
  if (fs::exists(out) && !force) throw export_error(out.string() + ": output directory exists (use --force to replace it)");
}

// A Linear to quantize must be in the source as a floating-point [rows, cols] weight.
inline void check_source_weight(const model_dir& source, const arch::linear_info& l) {
  const std::string name = l.name + ".weight";
  if (!source.has(name)) throw export_error(source.path().string() + ": tensor " + name + " is missing");
  const auto& t = source.tensor(name);
  if (t.type != dtype::BF16 && t.type != dtype::F16 && t.type != dtype::F32)
    throw export_error(source.path().string() + ": tensor " + name + " has dtype " + std::string(to_string(t.type)) +
                       ", expected BF16, F16 or F32");
  if (t.shape != std::vector<std::int64_t>{l.rows, l.cols})
    throw export_error(source.path().string() + ": tensor " + name + " has shape [" +
                       [&] {
                         std::string s;
                         for (auto d : t.shape) s.append(s.empty() ? "" : ", ").append(std::to_string(d));
                         return s;
                       }() +
                       "] but config.json implies [" + std::to_string(l.rows) + ", " + std::to_string(l.cols) + "]");
}

class ct_export {
 public:
  // `formats[i]` is the format name of profile.linears[i] ("BF16": left unquantized).
  ct_export(const model_dir& source, const arch::profile& profile, std::vector<std::string> formats,
            std::filesystem::path out, export_options options = {})
      : src_(&source), profile_(&profile), formats_(std::move(formats)), out_(std::move(out)), opt_(options) {
    namespace fs = std::filesystem;
    if (formats_.size() != profile.linears.size()) throw export_error("export: one format per Linear expected");
    // Its FP8 Linears would be copied as they are under a compressed-tensors config that does not describe them.
    if (fp8_block_layout_of(source.config_json(), (source.path() / "config.json").string()))
      throw export_error(source.path().string() + ": exporting from a block-FP8 source is not supported yet");
    check_output_dir(out_, source.path(), opt_.force);
    qconfig_ = quantization_config(profile, formats_);  // validates units and exportability
    std::vector<tensor_decl> decls;
    std::set<std::string> replaced;
    for (std::size_t i = 0; i < profile.linears.size(); ++i) {
      const auto& l = profile.linears[i];
      // Experts stored packed are written per expert, every one (vLLM's loader reads a checkpoint's experts
      // either all packed or all per expert), and the packed tensors they came from are not copied.
      const auto packed = source.packed_source(l.name + ".weight");
      if (packed) replaced.insert(*packed);
      if (resolve_format(formats_[i]).passthrough) {
        if (packed) {
          const auto& t = source.tensor(l.name + ".weight");
          decls.push_back({t.name, t.type, t.shape});
          copies_.push_back(t.name);
        }
        continue;
      }
      check_source_weight(source, l);
      replaced.insert(l.name + ".weight");
      visit_format(formats_[i], [&](auto f) {
        using F = decltype(f);
        require_accepts<F>(l.rows, l.cols, l.name);
        for (const stored_tensor& t : F::stored_tensors(l.rows, l.cols)) {
          decls.push_back({l.name + "." + std::string(t.suffix), t.type,
                           std::vector<std::int64_t>(t.shape.begin(), t.shape.begin() + t.rank)});
          pending_.insert(decls.back().name);
        }
      });
    }
    for (const auto& name : source.tensor_names()) {
      if (replaced.contains(name)) continue;
      const auto& t = source.tensor(name);
      decls.push_back({name, t.type, t.shape});
      copies_.push_back(name);
    }
    std::sort(decls.begin(), decls.end(), [](const tensor_decl& a, const tensor_decl& b) { return a.name < b.name; });
    out_dir_ = std::make_unique<atomic_output>(out_);
    tmp_ = out_dir_->tmp();
    fs::create_directories(tmp_);
    writer_ = std::make_unique<checkpoint_writer>(tmp_, decls, opt_.max_shard_bytes);
  }
  ct_export(const ct_export&) = delete;
  ct_export& operator=(const ct_export&) = delete;

  // Writes the packed tensors of Linear `index` (what pq::pack returned for its format).
  void write_linear(std::size_t index, std::span<const packed_tensor> tensors) {
    const auto& l = profile_->linears.at(index);
    for (const auto& t : tensors) {
      const std::string name = l.name + "." + t.suffix;
      if (!pending_.erase(name)) throw export_error("export: unexpected or repeated tensor " + name);
      writer_->write(name, t.bytes);
    }
  }

  // Adds a file of pq's own (report.json, a plot) to the checkpoint directory.
  void add_file(const std::string& name, const std::string& content) {
    std::ofstream out(tmp_ / name, std::ios::binary);
    out << content;
    if (!out) throw export_error((tmp_ / name).string() + ": write failed");
  }

  // Copies the remaining tensors and files, writes config.json, and moves the checkpoint into place.
  void finish() {
    namespace fs = std::filesystem;
    if (!pending_.empty()) throw export_error("export: quantized tensor " + *pending_.begin() + " was never written");
    for (const auto& name : copies_) writer_->write(name, src_->tensor(name).data);
    writer_->finish();
    nlohmann::json config = src_->config_json();
    config["quantization_config"] = qconfig_;
    {
      std::ofstream out(tmp_ / "config.json");
      out << config.dump(2) << "\n";
      if (!out) throw export_error((tmp_ / "config.json").string() + ": write failed");
    }
    for (const auto& entry : fs::directory_iterator(src_->path())) {
      const std::string name = entry.path().filename().string();
      const bool weights = name.ends_with(".safetensors") || name == "model.safetensors.index.json";
      if (!entry.is_regular_file() || weights || name == "config.json" || fs::exists(tmp_ / name)) continue;
      fs::copy_file(entry.path(), tmp_ / name, fs::copy_options::overwrite_existing);
    }
    if (fs::exists(out_) && !opt_.force) throw export_error(out_.string() + ": output directory appeared during the export");
    out_dir_->commit(opt_.force);
  }

  const nlohmann::json& quantization_config_json() const { return qconfig_; }

 private:
  const model_dir* src_;
  const arch::profile* profile_;
  std::vector<std::string> formats_;
  std::filesystem::path out_, tmp_;
  std::unique_ptr<atomic_output> out_dir_;  // declared before writer_: destroyed after it
  export_options opt_;
  nlohmann::json qconfig_;
  std::unique_ptr<checkpoint_writer> writer_;
  std::set<std::string> pending_;
  std::vector<std::string> copies_;
};

// Reads the quantized Linears of an exported checkpoint back: format per Linear from its
// quantization_config, and the dequantized weights exactly as a reader of the checkpoint computes them.
struct ct_checkpoint {
  model_dir dir;
  arch::profile profile;
  std::vector<std::string> formats;  // per profile.linears

  static ct_checkpoint open(const std::filesystem::path& path) {
    ct_checkpoint c{model_dir::open(path), {}, {}};
    const auto& cfg = c.dir.config_json();
    if (!cfg.contains("quantization_config")) throw export_error(path.string() + ": config.json has no quantization_config");
    c.profile = arch::make_profile(arch::parse_config(cfg, (path / "config.json").string()));
    c.formats = formats_from_config(c.profile, cfg["quantization_config"]);
    return c;
  }

  // fp32 [rows, cols] weight of Linear `index` as stored (dequantized, or the BF16 tensor).
  std::vector<float> weight(std::size_t index) const {
    const auto& l = profile.linears.at(index);
    if (resolve_format(formats[index]).passthrough) return to_float(dir.tensor(l.name + ".weight"));
    return visit_format(formats[index], [&](auto f) {
      using F = decltype(f);
      std::vector<packed_tensor> tensors;
      for (const stored_tensor& s : F::stored_tensors(l.rows, l.cols)) {
        const std::string name = l.name + "." + std::string(s.suffix);
        if (!dir.has(name)) throw export_error(dir.path().string() + ": " + std::string(F::name) + " Linear lacks " + name);
        const auto& t = dir.tensor(name);
        tensors.push_back({std::string(s.suffix), t.type, {t.shape.begin(), t.shape.end()},
                           std::vector<std::byte>(t.data.begin(), t.data.end())});
      }
      return dequantize(unpack<F>(tensors, l.rows, l.cols));
    });
  }
};

}  // namespace pq::io
