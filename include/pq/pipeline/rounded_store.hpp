// pq/pipeline/rounded_store.hpp: the cost table's roundings, kept on disk instead of in memory.
//
// Every (decision unit, format) the cost table rounds is written once, as the packed tensors that
// would ship, to <dir>/<unit>-<format>.safetensors (tensors named like the export's, "<linear>.<suffix>";
// each member's output error in the metadata). Validation dequantizes them again one layer at a
// time through rounded_weights, and the export copies them, so no stage holds more than one layer's
// roundings, whatever the model's size. The files are written atomically (temporary name, then
// rename): an interrupted run leaves only whole files, which a rerun on the same inputs reuses.
#pragma once
#include <algorithm>
#include <charconv>
#include <limits>
#include <cstdio>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <pq/formats/bundle.hpp>
#include <pq/formats/quantized.hpp>
#include <pq/io/atomic_file.hpp>
#include <pq/io/safetensors.hpp>
#include <pq/model/architecture.hpp>
#include <pq/model/weights.hpp>

namespace pq::pipeline {

class rounded_store {
 public:
  rounded_store(std::filesystem::path dir, const model::profile& profile) : dir_(std::move(dir)), profile_(&profile) {
    std::filesystem::create_directories(dir_);
  }

  const std::filesystem::path& dir() const { return dir_; }

  std::filesystem::path file(std::size_t unit, const std::string& format) const {
    return dir_ / (std::to_string(unit) + "-" + format + ".safetensors");
  }
  bool has(std::size_t unit, const std::string& format) const { return std::filesystem::exists(file(unit, format)); }

  // Stores the rounding of every member of `unit` (in member order) and their output errors.
  void put(std::size_t unit, const std::string& format, const std::vector<std::vector<packed_tensor>>& members,
           const std::vector<double>& output_errors) const {
    const auto& u = profile_->units.at(unit);
    std::vector<io::tensor_decl> decls;
    std::map<std::string, std::string> meta;
    for (std::size_t k = 0; k < u.members.size(); ++k) {
      const std::string& linear = linear_of(u, k).name;
      for (const auto& t : members.at(k)) decls.push_back({linear + "." + t.suffix, t.type, {t.shape.begin(), t.shape.end()}});
      char buf[32];
      const auto r = std::to_chars(buf, buf + sizeof buf, output_errors.at(k));  // shortest round-trip form
      meta[error_key(linear)] = std::string(buf, r.ptr);
    }
    io::write_atomically(file(unit, format), [&](const std::filesystem::path& tmp) {
      io::safetensors_writer w(tmp, decls, meta);
      for (std::size_t k = 0; k < u.members.size(); ++k)
        for (const auto& t : members[k]) w.write(linear_of(u, k).name + "." + t.suffix, t.bytes);
      w.close();
    });
  }

  // The output errors stored with a unit's rounding, in member order.
  std::vector<double> output_errors(std::size_t unit, const std::string& format) const {
    const auto f = io::safetensors_file::open(file(unit, format));
    const auto& u = profile_->units.at(unit);
    std::vector<double> out;
    for (std::size_t k = 0; k < u.members.size(); ++k) {
      const auto it = f.metadata().find(error_key(linear_of(u, k).name));
      double v = 0;
      if (it == f.metadata().end() || std::from_chars(it->second.data(), it->second.data() + it->second.size(), v).ec != std::errc{})
        throw io::format_error(f.path() + ": no valid output error for " + linear_of(u, k).name);
      out.push_back(v);
    }
    return out;
  }

  // The packed tensors of one Linear in `format`, as the export writes them.
  std::vector<packed_tensor> tensors(std::size_t linear, const std::string& format) const {
    const auto& l = profile_->linears.at(linear);
    const auto f = io::safetensors_file::open(file(static_cast<std::size_t>(l.unit), format));
    return visit_format(format, [&](auto fmt) {
      using F = decltype(fmt);
      std::vector<packed_tensor> out;
      for (const stored_tensor& t : F::stored_tensors(l.rows, l.cols)) {
        const std::string name = l.name + "." + std::string(t.suffix);
        const io::tensor_view& v = f.at(name);
        out.push_back({std::string(t.suffix), v.type, {v.shape.begin(), v.shape.end()}, {v.data.begin(), v.data.end()}});
      }
      return out;
    });
  }

  // The dequantized weight [rows, cols] of one Linear in `format` (exactly what the checkpoint decodes to).
  model::matrix dequantized(std::size_t linear, const std::string& format) const {
    const auto& l = profile_->linears.at(linear);
    const auto packed = tensors(linear, format);
    return visit_format(format, [&](auto fmt) {
      using F = decltype(fmt);
      const std::vector<float> w = dequantize(unpack<F>(packed, l.rows, l.cols));
      return model::matrix(Eigen::Map<const model::matrix>(w.data(), l.rows, l.cols));
    });
  }

 private:
  static std::string error_key(const std::string& linear) { return "pq.output_error." + linear; }
  const model::linear_info& linear_of(const model::decision_unit& u, std::size_t k) const {
    return profile_->linears.at(static_cast<std::size_t>(u.members.at(k)));
  }

  std::filesystem::path dir_;
  const model::profile* profile_;
};

// The source model with every quantized Linear replaced by its stored rounding, dequantized when the
// forward asks for it (one layer at a time), never all at once.
class rounded_weights final : public model::weight_provider {
 public:
  // stored[i]: the format whose stored rounding replaces profile.linears[i], or none where the source's own weight
  // ships (a passthrough format keeping it: format_table::keeps).
  rounded_weights(const model::weight_provider& base, const model::profile& profile, const rounded_store& store,
                  std::vector<std::optional<std::string>> stored)
      : base_(&base), store_(&store), formats_(std::move(stored)) {
    for (std::size_t i = 0; i < profile.linears.size(); ++i)
      if (formats_.at(i)) {
        index_[profile.linears[i].name + ".weight"] = i;
        first_layer_ = std::min(first_layer_, profile.linears[i].layer);
      }
  }

  // The first layer whose weights differ from the source (layers when none does).
  int first_changed(int layers) const { return std::min(first_layer_, layers); }

  bool has(const std::string& name) const override { return base_->has(name); }
  std::vector<std::int64_t> shape_of(const std::string& name) const override { return base_->shape_of(name); }
  model::dense_tensor load(const std::string& name) const override {
    const auto it = index_.find(name);
    if (it == index_.end()) return base_->load(name);
    const model::matrix w = store_->dequantized(it->second, *formats_[it->second]);
    return {{w.rows(), w.cols()}, std::vector<float>(w.data(), w.data() + w.size())};
  }

 private:
  const model::weight_provider* base_;
  const rounded_store* store_;
  std::vector<std::optional<std::string>> formats_;
  std::map<std::string, std::size_t> index_;
  int first_layer_ = std::numeric_limits<int>::max();
};

}  // namespace pq::pipeline
