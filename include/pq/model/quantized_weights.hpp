// pq/model/quantized_weights.hpp: an exported compressed-tensors checkpoint as a weight_provider (dequantized Linears, other tensors as stored).
#pragma once
// GCC 12 at -O3 reports a false -Wrestrict inside std::string's operator+ inlined from
// io/compressed_tensors.hpp (GCC bug 105329); silenced for that include only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wrestrict"
#include <pq/io/export.hpp>
#pragma GCC diagnostic pop
#include <pq/model/architecture.hpp>
#include <pq/model/weights.hpp>

#include <map>
#include <string>

namespace pq::model {

// Every quantized Linear's `<name>.weight` is its dequantized matrix, computed by pq's reader of
// the checkpoint exactly as a consumer of the checkpoint computes it; every other tensor
// (norms, embeddings, routers, biases, BF16 Linears) is read as stored.
class quantized_weights final : public weight_provider {
public:
  explicit quantized_weights(const io::ct_checkpoint& checkpoint) : ct_(&checkpoint) {
    for (std::size_t i = 0; i < checkpoint.profile.linears.size(); ++i)
      linear_[checkpoint.profile.linears[i].name + ".weight"] = i;
  }

  bool has(const std::string& name) const override { return linear_.contains(name) || ct_->dir.has(name); }

  dense_tensor load(const std::string& name) const override {
    if (const auto it = linear_.find(name); it != linear_.end()) {
      const auto& l = ct_->profile.linears[it->second];
      return {{l.rows, l.cols}, ct_->weight(it->second)};
    }
    const io::tensor_view& t = ct_->dir.tensor(name);
    return {t.shape, io::to_float(t)};
  }

  std::vector<std::int64_t> shape_of(const std::string& name) const override {
    if (const auto it = linear_.find(name); it != linear_.end()) {
      const auto& l = ct_->profile.linears[it->second];
      return {l.rows, l.cols};
    }
    return ct_->dir.tensor(name).shape;
  }

private:
  const io::ct_checkpoint* ct_;
  std::map<std::string, std::size_t> linear_;
};

}  // namespace pq::model
