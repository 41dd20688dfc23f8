// pq/model/checkpoint_weights.hpp: the forward's weight_provider over a Hugging Face model directory:
// each tensor is converted to fp32 when asked for and not kept.
#pragma once
#include <string>

#include <pq/io/model_dir.hpp>
#include <pq/model/weights.hpp>

namespace pq::model {

class checkpoint_weights final : public weight_provider {
 public:
  explicit checkpoint_weights(const io::model_dir& dir) : dir_(&dir) {}
  bool has(const std::string& name) const override { return dir_->has(name); }
  dense_tensor load(const std::string& name) const override {
    const io::tensor_view& t = dir_->tensor(name);
    return {t.shape, io::to_float(t)};
  }
  std::vector<std::int64_t> shape_of(const std::string& name) const override { return dir_->tensor(name).shape; }

 private:
  const io::model_dir* dir_;
};

}  // namespace pq::model
