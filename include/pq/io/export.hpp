// pq/io/export.hpp: writes a compressed-tensors checkpoint: for every quantized Linear exactly the tensors
// its format stores, every other tensor copied unchanged (experts stored packed: per expert, see ct_export; a
// block-FP8 source's Linears: see ct_export), config.json with quantization_config, the other files (tokenizer,
// generation_config) copied. Everything goes to a temporary directory beside the output, renamed into place only
// when complete; an export abandoned half way removes it. The source is only read.
#pragma once
#include <algorithm>
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

// A Linear to quantize must be in the source as a [rows, cols] weight: floating point, or F8_E4M3 where the
// source stores it as block FP8 (`fp8`: then pq quantizes its dequantized weight).
inline void check_source_weight(const model_dir& source, const arch::linear_info& l, bool fp8 = false) {
  const std::string name = l.name + ".weight";
  if (!source.has(name)) throw export_error(source.path().string() + ": tensor " + name + " is missing");
  const auto& t = source.tensor(name);
  if (!fp8 && t.type != dtype::BF16 && t.type != dtype::F16 && t.type != dtype::F32)
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

// From a block-FP8 source (io/fp8_block.hpp) a Linear in FP8_SOURCE ships its codes as they are and its
// `weight_scale_inv` as `weight_scale` (F32, the same values); a Linear in any other format (BF16 included) is
// quantized from its dequantized weight, and its `weight_scale_inv` is not written. config.json's
// quantization_config is replaced by the compressed-tensors one.
class ct_export {
 public:
  // `formats[i]` is the format name of profile.linears[i] ("BF16": left unquantized).
  ct_export(const model_dir& source, const arch::profile& profile, std::vector<std::string> formats,
            std::filesystem::path out, export_options options = {})
      : src_(&source), profile_(&profile), formats_(std::move(formats)), out_(std::move(out)), opt_(options) {
    namespace fs = std::filesystem;
    if (formats_.size() != profile.linears.size()) throw export_error("export: one format per Linear expected");
    check_output_dir(out_, source.path(), opt_.force);
    qconfig_ = quantization_config(profile, formats_);  // validates units and exportability
    const auto fp8 = fp8_block_layout_of(source.config_json(), (source.path() / "config.json").string());
    expects_.assign(profile.linears.size(), false);
    std::vector<tensor_decl> decls;
    std::set<std::string> replaced;
    for (std::size_t i = 0; i < profile.linears.size(); ++i) {
      const auto& l = profile.linears[i];
      const std::string weight = l.name + ".weight";
      // Experts stored packed are written per expert, every one (vLLM's loader reads a checkpoint's experts
      // either all packed or all per expert), and the packed tensors they came from are not copied.
      const auto packed = source.packed_source(weight);
      if (packed) replaced.insert(*packed);
      const source_encoding encoding = source.has(weight) ? linear_encoding(source, fp8, l.name) : std::nullopt;
      if (encoding) replaced.insert(fp8_scale_name(l.name));
      const format_traits traits = resolve_format(formats_[i]);
      if (traits.keeps(encoding)) {
        if (packed) {
          const auto& t = source.tensor(weight);
          decls.push_back({t.name, t.type, t.shape});
          copies_.push_back(t.name);
        }
        if (encoding) keep_fp8(i, decls, replaced);
        continue;
      }
      if (!traits.available(encoding))
        throw export_error(source.path().string() + ": " + l.name + " cannot be " + std::string(traits.name) +
                           ", which keeps a Linear the source stores as " + describe(traits.kept_encoding) +
                           "; the source stores it as " + describe(encoding));
      check_source_weight(source, l, encoding.has_value());
      replaced.insert(weight);
      expects_[i] = true;
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

  // Whether Linear `index` is rounded by pq, so that write_linear must give its tensors; false where the source's
  // own tensors ship (BF16 of a dense weight, FP8_SOURCE of a block-FP8 one).
  bool expects(std::size_t index) const { return expects_.at(index); }

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
    for (const auto& [name, kept] : kept_) {
      const tensor_view& t = src_->tensor(kept.first);
      if (t.type == kept.second) {
        writer_->write(name, t.data);
      } else {  // a tile scale stored as BF16 or F16: the same values in F32
        const std::vector<float> v = to_float(t);
        writer_->write(name, std::as_bytes(std::span(v)));
      }
    }
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
  // A block-FP8 Linear kept as the source holds it: every tensor its format stores, from the source's codes
  // (the same bytes) and tile scales (weight_scale_inv, the same values), the shapes checked.
  void keep_fp8(std::size_t index, std::vector<tensor_decl>& decls, std::set<std::string>& replaced) {
    const auto& l = profile_->linears[index];
    visit_format(formats_[index], [&](auto f) {
      using F = decltype(f);
      if constexpr (keeps_fp8_source<F>)
        for (const stored_tensor& s : F::stored_tensors(l.rows, l.cols)) {
          const std::string name = l.name + "." + std::string(s.suffix);
          const tensor_view& from = src_->tensor(s.role == tensor_role::codes ? l.name + ".weight" : fp8_scale_name(l.name));
          const std::vector<std::int64_t> shape(s.shape.begin(), s.shape.begin() + s.rank);
          if (from.shape != shape || (s.role == tensor_role::codes && from.type != s.type))
            throw export_error(src_->path().string() + ": tensor " + from.name + " does not fit " +
                               std::string(F::name) + " (dtype " + std::string(to_string(from.type)) + ", expected " +
                               std::string(to_string(s.type)) + " of the Linear's shape and tiles)");
          replaced.insert(from.name);
          decls.push_back({name, s.type, shape});
          kept_[name] = {from.name, s.type};
        }
    });
  }

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
  std::map<std::string, std::pair<std::string, dtype>> kept_;  // written tensor -> the source tensor it keeps, dtype
  std::vector<bool> expects_;                                   // per Linear: rounded by pq (see expects)
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
    const format_traits traits = resolve_format(formats[index]);
    if (traits.passthrough && !traits.kept_encoding) return to_float(dir.tensor(l.name + ".weight"));
    return visit_format(formats[index], [&](auto f) {
      using F = decltype(f);
      const auto stored = [&](const stored_tensor& s) -> const tensor_view& {
        const std::string name = l.name + "." + std::string(s.suffix);
        if (!dir.has(name)) throw export_error(dir.path().string() + ": " + std::string(F::name) + " Linear lacks " + name);
        return dir.tensor(name);
      };
      if constexpr (keeps_fp8_source<F>) {  // the source's codes and tile scales: W = e4m3(code) * scale of its tile
        const auto st = F::stored_tensors(l.rows, l.cols);
        const auto of = [&](tensor_role r) -> const tensor_view& {
          return stored(*std::find_if(st.begin(), st.end(), [&](const stored_tensor& s) { return s.role == r; }));
        };
        const tensor_view& codes = of(tensor_role::codes);
        if (codes.shape != std::vector<std::int64_t>{l.rows, l.cols})
          throw export_error(dir.path().string() + ": " + codes.name + " does not have the Linear's shape");
        return dequantize_fp8_block(codes, of(tensor_role::tile_scale), F::keeps_source);
      } else {
        std::vector<packed_tensor> tensors;
        for (const stored_tensor& s : F::stored_tensors(l.rows, l.cols)) {
          const auto& t = stored(s);
          tensors.push_back({std::string(s.suffix), t.type, {t.shape.begin(), t.shape.end()},
                             std::vector<std::byte>(t.data.begin(), t.data.end())});
        }
        return dequantize(unpack<F>(tensors, l.rows, l.cols));
      }
    });
  }
};

}  // namespace pq::io
