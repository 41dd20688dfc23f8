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
  bool has(std::string_view name) const { return where_.contains(std::string(name)); }

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
    if (it == where_.end()) throw model_dir_error(dir_.string() + ": no tensor '" + std::string(name) + "'");
    const auto& file = shard(it->second);
    const tensor_view* t = file.find(name);
    if (!t) throw model_dir_error((dir_ / it->second).string() + ": the index lists '" + std::string(name) + "' but the shard lacks it");
    return *t;
  }

 private:
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
  std::shared_ptr<std::mutex> mutex_ = std::make_shared<std::mutex>();
};

}  // namespace pq::io
