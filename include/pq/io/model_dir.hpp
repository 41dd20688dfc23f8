// pq/io/model_dir.hpp: a Hugging Face model directory: config.json, and weights in model.safetensors or
// in shards listed by model.safetensors.index.json. Shards are opened (mapped) on first use; tensors
// are read one at a time.
#pragma once
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <pq/error.hpp>
#include <pq/io/safetensors.hpp>

namespace pq::io {

struct model_dir_error : pq::error {
  using pq::error::error;
};

inline nlohmann::json read_json_file(const std::filesystem::path& p) {
  std::ifstream in(p);
  if (!in) throw model_dir_error(p.string() + ": cannot read");
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw model_dir_error(p.string() + ": invalid JSON: " + e.what());
  }
}

class model_dir {
 public:
  static model_dir open(const std::filesystem::path& dir) {
    model_dir m;
    m.dir_ = dir;
    if (!std::filesystem::is_directory(dir)) throw model_dir_error(dir.string() + ": not a model directory");
    if (!std::filesystem::exists(dir / "config.json")) throw model_dir_error(dir.string() + ": no config.json");
    m.config_ = read_json_file(dir / "config.json");
    const auto index = dir / "model.safetensors.index.json";
    if (std::filesystem::exists(index)) {
      const auto j = read_json_file(index);
      if (!j.contains("weight_map") || !j["weight_map"].is_object())
        throw model_dir_error(index.string() + ": no weight_map object");
      for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
        if (!it.value().is_string()) throw model_dir_error(index.string() + ": weight_map entry '" + it.key() + "' is not a file name");
        const std::string file = it.value().get<std::string>();
        if (file.find('/') != std::string::npos || file == ".." )
          throw model_dir_error(index.string() + ": shard name '" + file + "' is not a plain file name");
        if (!std::filesystem::exists(dir / file))
          throw model_dir_error(dir.string() + ": shard " + file + " listed in the index is missing (partial download?)");
        m.where_[it.key()] = file;
      }
    } else if (std::filesystem::exists(dir / "model.safetensors")) {
      const auto f = safetensors_file::open(dir / "model.safetensors");
      for (const auto& t : f.tensors()) m.where_[t.name] = "model.safetensors";
      m.files_->emplace("model.safetensors", std::make_shared<safetensors_file>(f));
    } else {
      throw model_dir_error(dir.string() + ": no model.safetensors or model.safetensors.index.json");
    }
    return m;
  }

  const nlohmann::json& config_json() const { return config_; }
  const std::filesystem::path& path() const { return dir_; }
  // A stored tensor, or a per-expert slice of stored packed experts (below).
  bool has(std::string_view name) const { return where_.contains(std::string(name)) || packed_slice(name).has_value(); }

  // The stored tensors (a packed expert tensor under its own name, not its slices).
  std::vector<std::string> tensor_names() const {
    std::vector<std::string> names;
    for (const auto& [n, f] : where_) names.push_back(n);
    return names;
  }
  // Shard file of a tensor.
  const std::string& file_of(std::string_view name) const { return where_.at(std::string(name)); }
  std::vector<std::string> files() const {
    std::vector<std::string> out;
    for (const auto& [n, f] : where_)
      if (std::find(out.begin(), out.end(), f) == out.end()) out.push_back(f);
    return out;
  }

  // The tensor's view (valid while this model_dir lives). Thread-safe.
  const tensor_view& tensor(std::string_view name) const {
    const auto it = where_.find(std::string(name));
    if (it == where_.end()) {
      if (auto slice = packed_slice(name)) {
        std::lock_guard lock(*mutex_);
        return slices_->try_emplace(std::string(name), std::move(*slice)).first->second;
      }
      throw model_dir_error(dir_.string() + ": no tensor '" + std::string(name) + "'");
    }
    const auto& file = shard(it->second);
    const tensor_view* t = file.find(name);
    if (!t) throw model_dir_error((dir_ / it->second).string() + ": the index lists '" + std::string(name) + "' but the shard lacks it");
    return *t;
  }

  // Routed experts stored packed, as Qwen3.5 releases them (`<moe>.experts.gate_up_proj` [E, 2I, H],
  // `<moe>.experts.down_proj` [E, H, I]), also answer under the per-expert names the descriptions and vLLM's
  // per-expert loaders use: `<moe>.experts.<e>.gate_proj.weight` [I, H] (rows e*2I .. e*2I+I of gate_up_proj),
  // `up_proj.weight` (the next I rows), `down_proj.weight` [H, I]. This names the stored packed tensor that
  // per-expert `name` is a slice of, or nothing.
  std::optional<std::string> packed_source(std::string_view name) const {
    const std::size_t at = name.rfind(".experts.");
    if (at == std::string_view::npos) return std::nullopt;
    const std::size_t first = at + 9, dot = name.find('.', first);
    if (dot == std::string_view::npos || dot == first) return std::nullopt;
    for (std::size_t i = first; i < dot; ++i)
      if (name[i] < '0' || name[i] > '9') return std::nullopt;
    const std::string_view leaf = name.substr(dot + 1);
    if (leaf != "gate_proj.weight" && leaf != "up_proj.weight" && leaf != "down_proj.weight") return std::nullopt;
    std::string packed(name.substr(0, first));
    packed += leaf == "down_proj.weight" ? "down_proj" : "gate_up_proj";
    if (!where_.contains(packed)) return std::nullopt;
    return packed;
  }

 private:
  // The view of per-expert `name` into its packed tensor, or nothing (not such a name, or out of range).
  std::optional<tensor_view> packed_slice(std::string_view name) const {
    const auto packed = packed_source(name);
    if (!packed) return std::nullopt;
    const std::size_t first = name.rfind(".experts.") + 9, dot = name.find('.', first);
    if (dot - first > 9) return std::nullopt;
    const std::int64_t e = std::stoll(std::string(name.substr(first, dot - first)));
    const std::string_view leaf = name.substr(dot + 1);
    const tensor_view& t = tensor(*packed);
    const bool down = leaf == "down_proj.weight";
    if (t.shape.size() != 3 || e >= t.shape[0] || (!down && t.shape[1] % 2)) return std::nullopt;
    const std::size_t elem = t.data.size() / static_cast<std::size_t>(t.numel());
    const std::int64_t rows = down ? t.shape[1] : t.shape[1] / 2;
    const std::int64_t row0 = e * t.shape[1] + (leaf == "up_proj.weight" ? rows : 0);
    tensor_view v{std::string(name), t.type, {rows, t.shape[2]}, {}};
    v.data = t.data.subspan(static_cast<std::size_t>(row0 * t.shape[2]) * elem,
                            static_cast<std::size_t>(rows * t.shape[2]) * elem);
    return v;
  }

  const safetensors_file& shard(const std::string& file) const {
    std::lock_guard lock(*mutex_);
    auto it = files_->find(file);
    if (it == files_->end()) it = files_->emplace(file, std::make_shared<safetensors_file>(safetensors_file::open(dir_ / file))).first;
    return *it->second;
  }

  std::filesystem::path dir_;
  nlohmann::json config_;
  std::map<std::string, std::string> where_;  // tensor -> shard file
  std::shared_ptr<std::map<std::string, std::shared_ptr<safetensors_file>>> files_ =
      std::make_shared<std::map<std::string, std::shared_ptr<safetensors_file>>>();
  std::shared_ptr<std::map<std::string, tensor_view>> slices_ =  // per-expert views handed out so far
      std::make_shared<std::map<std::string, tensor_view>>();
  std::shared_ptr<std::mutex> mutex_ = std::make_shared<std::mutex>();
};

}  // namespace pq::io
