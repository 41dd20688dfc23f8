// pq/model/weights.hpp: where the forward gets its fp32 weights from, and per-Linear substitution.
#pragma once
#include <pq/model/tensor.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace pq::model {

// One checkpoint tensor converted to fp32, with its stored shape.
struct dense_tensor {
  std::vector<std::int64_t> shape;
  std::vector<float> data;
};

// The forward reads every tensor by its Hugging Face name through this interface: from a
// checkpoint directory, from memory, or with some Linear weights replaced.
class weight_provider {
public:
  virtual ~weight_provider() = default;
  virtual bool has(const std::string& name) const = 0;
  virtual dense_tensor load(const std::string& name) const = 0;
  // The stored shape; providers that know it without converting the data override this.
  virtual std::vector<std::int64_t> shape_of(const std::string& name) const { return load(name).shape; }
};

// A provider that answers from a base provider except for the Linears it was given a
// replacement for (e.g. "model.layers.3.self_attn.q_proj" -> its dequantized weight).
class substituted_weights final : public weight_provider {
public:
  explicit substituted_weights(const weight_provider& base) : base_(&base) {}

  // Replaces `<linear>.weight`; the matrix is [out_features, in_features].
  void substitute(const std::string& linear, matrix weight) {
    replaced_[linear + ".weight"] = std::move(weight);
  }
  const std::map<std::string, matrix>& substitutions() const { return replaced_; }

  bool has(const std::string& name) const override {
    return replaced_.contains(name) || base_->has(name);
  }
  dense_tensor load(const std::string& name) const override {
    auto it = replaced_.find(name);
    if (it == replaced_.end()) return base_->load(name);
    const matrix& w = it->second;
    dense_tensor t{{w.rows(), w.cols()}, std::vector<float>(w.data(), w.data() + w.size())};
    return t;
  }

private:
  const weight_provider* base_;
  std::map<std::string, matrix> replaced_;
};

// A provider over tensors held in memory (tests, small synthetic models).
class memory_weights final : public weight_provider {
public:
  void add(const std::string& name, dense_tensor t) { tensors_[name] = std::move(t); }
  void add(const std::string& name, const matrix& m) {
    add(name, dense_tensor{{m.rows(), m.cols()}, std::vector<float>(m.data(), m.data() + m.size())});
  }
  void add(const std::string& name, const vector& v) {
    add(name, dense_tensor{{v.size()}, std::vector<float>(v.data(), v.data() + v.size())});
  }
  bool has(const std::string& name) const override { return tensors_.contains(name); }
  dense_tensor load(const std::string& name) const override {
    auto it = tensors_.find(name);
    if (it == tensors_.end()) throw model_error("weights: no tensor '" + name + "'");
    return it->second;
  }

private:
  std::map<std::string, dense_tensor> tensors_;
};

namespace detail {
inline std::string shape_string(const std::vector<std::int64_t>& s) {
  std::string out = "[";
  for (std::size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}
inline dense_tensor load_checked(const weight_provider& p, const std::string& name,
                                 const std::vector<std::int64_t>& expected) {
  if (!p.has(name)) throw model_error("checkpoint has no tensor '" + name + "' that config.json implies");
  dense_tensor t = p.load(name);
  if (t.shape != expected)
    throw model_error("tensor '" + name + "' has shape " + shape_string(t.shape) +
                      " but config.json implies " + shape_string(expected));
  return t;
}
}  // namespace detail

// Loads a 2-D tensor and checks its shape against what the config implies.
inline matrix load_matrix(const weight_provider& p, const std::string& name, std::int64_t rows, std::int64_t cols) {
  dense_tensor t = detail::load_checked(p, name, {rows, cols});
  return Eigen::Map<const matrix>(t.data.data(), rows, cols);
}

// Loads a 1-D tensor and checks its length.
inline vector load_vector(const weight_provider& p, const std::string& name, std::int64_t n) {
  dense_tensor t = detail::load_checked(p, name, {n});
  return Eigen::Map<const vector>(t.data.data(), n);
}

}  // namespace pq::model
