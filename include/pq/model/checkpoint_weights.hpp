// pq/model/checkpoint_weights.hpp: the forward's weight_provider over a Hugging Face model directory:
// each tensor is converted to fp32 when asked for and not kept. A block-FP8 Linear (F8_E4M3 `weight` with
// `weight_scale_inv`, io/fp8_block.hpp) is its dequantized weight. Routed experts stored packed answer under their
// per-expert names (io::model_dir::packed_source).
#pragma once
#include <optional>
#include <string>

#include <pq/io/fp8_block.hpp>
#include <pq/io/model_dir.hpp>
#include <pq/model/weights.hpp>

namespace pq::model {

class checkpoint_weights final : public weight_provider {
 public:
  explicit checkpoint_weights(const io::model_dir& dir)
      : dir_(&dir), fp8_(io::fp8_block_layout_of(dir.config_json(), (dir.path() / "config.json").string())) {}
  bool has(const std::string& name) const override { return dir_->has(name); }
  dense_tensor load(const std::string& name) const override {
    const io::tensor_view& t = dir_->tensor(name);
    if (fp8_ && t.type == dtype::F8_E4M3 && name.ends_with(".weight"))
      return {t.shape, io::source_weight(*dir_, fp8_, name.substr(0, name.size() - 7))};
    return {t.shape, io::to_float(t)};
  }
  std::vector<std::int64_t> shape_of(const std::string& name) const override { return dir_->tensor(name).shape; }

 private:
  const io::model_dir* dir_;
  std::optional<io::fp8_block_layout> fp8_;  // set for a block-FP8 source
};

}  // namespace pq::model
