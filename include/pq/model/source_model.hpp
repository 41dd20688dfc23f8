// pq/model/source_model.hpp: a Hugging Face checkpoint opened for the forward (directory, parsed config, weights), and token files.
#pragma once
#include <pq/io/model_dir.hpp>
#include <pq/io/safetensors.hpp>
#include <pq/model/checkpoint_weights.hpp>
#include <pq/model/config.hpp>
#include <pq/model/layer_weights.hpp>
#include <pq/model/tokens.hpp>

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace pq::model {

// Every tensor the forward reads, with the shape config.json implies (from the architecture description).
using arch::expected_tensors;

// Checks, before any compute, that every tensor the config implies is present with its shape.
inline void check_checkpoint(const weight_provider& w, const forward_config& c, const std::string& source) {
  for (const auto& [name, shape] : expected_tensors(c)) {
    if (!w.has(name)) throw model_error(source + ": no tensor '" + name + "', which config.json implies");
    const auto got = w.shape_of(name);
    if (got != shape)
      throw model_error(source + ": tensor '" + name + "' has shape " + detail::shape_string(got) +
                        " but config.json implies " + detail::shape_string(shape));
  }
}

// A checkpoint directory opened for the forward; checked against its config.json on open.
class source_model {
public:
  explicit source_model(const std::filesystem::path& dir)
      : dir_(io::model_dir::open(dir)),
        config_(parse_config(dir_.config_json(), (dir / "config.json").string())),
        weights_(dir_) {
    check_checkpoint(weights_, config_.shape, dir.string());
  }
  source_model(const source_model&) = delete;
  source_model& operator=(const source_model&) = delete;

  const io::model_dir& dir() const { return dir_; }
  const model_config& config() const { return config_; }
  const forward_config& shape() const { return config_.shape; }
  const weight_provider& weights() const { return weights_; }

private:
  io::model_dir dir_;
  model_config config_;
  checkpoint_weights weights_;
};

// The [sequences, length] I32 (or I64) token tensor `tensor` of a safetensors file, checked against `vocab`.
inline token_batch load_tokens(const std::filesystem::path& file, const std::string& tensor, std::int64_t vocab) {
  const io::safetensors_file f = io::safetensors_file::open(file);
  const std::string what = file.string() + ":" + tensor;
  const io::tensor_view* t = f.find(tensor);
  if (!t) throw model_error(file.string() + ": no tensor '" + tensor + "'");
  std::vector<std::int32_t> ids(static_cast<std::size_t>(t->numel()));
  if (t->type == dtype::I32) {
    std::memcpy(ids.data(), t->data.data(), ids.size() * 4);
  } else if (t->type == dtype::I64) {
    for (std::size_t i = 0; i < ids.size(); ++i) {
      std::int64_t v;
      std::memcpy(&v, t->data.data() + 8 * i, 8);
      if (v < 0 || v >= vocab)
        throw model_error(what + ": token id " + std::to_string(v) + " at position " + std::to_string(i) +
                          " is outside the vocabulary [0, " + std::to_string(vocab) + ")");
      ids[i] = static_cast<std::int32_t>(v);
    }
  } else {
    throw model_error(what + ": token tensor has dtype " + std::string(to_string(t->type)) + ", expected I32 or I64");
  }
  return make_token_batch(t->shape, std::move(ids), vocab, what);
}

}  // namespace pq::model
