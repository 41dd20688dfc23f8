// pq/model/checkpoint_weights.hpp: the forward's weight_provider over a Hugging Face model directory:
// each tensor is converted to fp32 when asked for and not kept. A block-FP8 Linear (F8_E4M3 `weight` with
// `weight_scale_inv`, io/fp8_block.hpp) is its dequantized weight. Routed experts stored packed as Qwen3.5 releases
// them (`<moe>.experts.gate_up_proj` [E, 2I, H], `<moe>.experts.down_proj` [E, H, I]) answer under the per-expert
// names the descriptions use (`<moe>.experts.<e>.gate_proj.weight` [I, H], up_proj the second half, down_proj).
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
  bool has(const std::string& name) const override { return dir_->has(name) || packed_slice(name).has_value(); }
  dense_tensor load(const std::string& name) const override {
    if (!dir_->has(name))
      if (const auto v = packed_slice(name)) return {v->shape, io::to_float(*v)};
    const io::tensor_view& t = dir_->tensor(name);
    if (fp8_ && t.type == dtype::F8_E4M3 && name.ends_with(".weight")) {
      const std::string scale = name + "_scale_inv";
      if (!dir_->has(scale))
        throw model_error(dir_->path().string() + ": FP8 tensor '" + name + "' has no '" + scale + "'");
      return {t.shape, io::dequantize_fp8_block(t, dir_->tensor(scale), *fp8_)};
    }
    return {t.shape, io::to_float(t)};
  }
  std::vector<std::int64_t> shape_of(const std::string& name) const override {
    if (!dir_->has(name))
      if (const auto v = packed_slice(name)) return v->shape;
    return dir_->tensor(name).shape;
  }

  // The slice of a packed expert tensor that per-expert `name` denotes, or nothing.
  std::optional<io::tensor_view> packed_slice(const std::string& name) const {
    const std::size_t at = name.rfind(".experts.");
    if (at == std::string::npos) return std::nullopt;
    const std::string pre = name.substr(0, at + 9);  // ...experts.
    const std::size_t dot = name.find('.', pre.size());
    if (dot == std::string::npos || dot == pre.size()) return std::nullopt;
    int e = 0;
    for (std::size_t i = pre.size(); i < dot; ++i) {
      if (name[i] < '0' || name[i] > '9') return std::nullopt;
      e = e * 10 + (name[i] - '0');
    }
    const std::string leaf = name.substr(dot + 1);
    const bool down = leaf == "down_proj.weight";
    if (!down && leaf != "gate_proj.weight" && leaf != "up_proj.weight") return std::nullopt;
    const std::string packed = pre + (down ? "down_proj" : "gate_up_proj");
    if (!dir_->has(packed)) return std::nullopt;
    const io::tensor_view& t = dir_->tensor(packed);
    if (t.shape.size() != 3 || e >= t.shape[0] || (!down && t.shape[1] % 2)) return std::nullopt;
    const std::size_t elem = t.data.size() / static_cast<std::size_t>(t.numel());
    const std::int64_t rows = down ? t.shape[1] : t.shape[1] / 2;
    const std::int64_t first = e * t.shape[1] + (leaf == "up_proj.weight" ? rows : 0);
    io::tensor_view v{name, t.type, {rows, t.shape[2]}, {}};
    v.data = t.data.subspan(static_cast<std::size_t>(first * t.shape[2]) * elem,
                            static_cast<std::size_t>(rows * t.shape[2]) * elem);
    return v;
  }

 private:
  const io::model_dir* dir_;
  std::optional<io::fp8_block_layout> fp8_;  // set for a block-FP8 source
};

}  // namespace pq::model
