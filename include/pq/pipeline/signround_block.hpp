// pq/pipeline/signround_block.hpp: SignRound's block-wise training (AutoRound's quantize_block): the Linears
// of one decoder layer, each in its own format, are trained together on the MSE between the layer's output
// on the quantized path's input and the full-precision layer's output on the full-precision input
// (AutoRound's default enable_quanted_input), by sign-SGD over random batches of calibration sequences; the
// iterate with the lowest batch loss is kept. The gradient dL/dŴ = dyᵀx of every Linear comes from the
// reference backward (model/detail/layer.hpp) and is chained to V and the multipliers by quant/signround.hpp.
#pragma once
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>
#include <vector>

#include <pq/core/parallel.hpp>
#include <pq/formats/bundle.hpp>
#include <pq/model/detail/layer.hpp>
#include <pq/model/forward.hpp>
#include <pq/formats/quantized.hpp>
#include <pq/quant/signround.hpp>

namespace pq::pipeline {

// One Linear under SignRound in some format, type-erased so that a layer's Linears may differ in format.
class signround_linear {
 public:
  virtual ~signround_linear() = default;
  virtual std::string_view format() const = 0;
  virtual std::vector<float> dequantized() const = 0;  // Ŵ of the current state, row-major
  virtual void step(std::span<const float> dW, float lr, float minmax_lr, const signround_options& o) = 0;
  virtual void keep() = 0;
  virtual void restore() = 0;
  virtual std::vector<packed_tensor> pack(float input_amax) const = 0;  // the current rounding, as stored
};

template <Format F>
class signround_linear_of final : public signround_linear {
 public:
  // `start`: the stored tensors of a rounding of the same weights to start from (e.g. GPTQ's), or empty for RTN's.
  signround_linear_of(std::vector<float> w, index_t rows, index_t cols, float tensor_scale,
                      std::span<const packed_tensor> start)
      : w_(std::move(w)), s_(w_, rows, cols, tensor_scale) {
    if (!start.empty()) s_.start_from(unpack<F>(start, rows, cols));
  }
  std::string_view format() const override { return F::name; }
  std::vector<float> dequantized() const override { return dequantize(s_.rounded()); }
  void step(std::span<const float> dW, float lr, float minmax_lr, const signround_options& o) override {
    s_.step(dW, lr, minmax_lr, o);
  }
  void keep() override { s_.keep(); }
  void restore() override { s_.restore(); }
  std::vector<packed_tensor> pack(float input_amax) const override { return pq::pack(s_.rounded(), input_amax); }
  const signround_state<F>& state() const { return s_; }

 private:
  std::vector<float> w_;  // owned source weights (the state references them)
  signround_state<F> s_;
};

// `unit_amax`: max |w| over the Linear's decision unit (fused siblings share the format's tensor scale).
inline std::unique_ptr<signround_linear> make_signround_linear(std::string_view format, std::vector<float> w, index_t rows,
                                                               index_t cols, float unit_amax,
                                                               std::span<const packed_tensor> start = {}) {
  return visit_format(format, [&](auto fmt) -> std::unique_ptr<signround_linear> {
    using F = decltype(fmt);
    return std::make_unique<signround_linear_of<F>>(std::move(w), rows, cols, F::tensor_scale(unit_amax), start);
  });
}

// AutoRound's IndexSampler: a shuffled order of the sequences, walked `batch` at a time, reshuffled when
// fewer than `batch` remain. The shuffle is Fisher-Yates over splitmix64, the same on every platform.
class sequence_sampler {
 public:
  sequence_sampler(Eigen::Index n, Eigen::Index batch, std::uint64_t seed) : n_(n), batch_(std::min(batch, n)), state_(seed) {
    reshuffle();
  }
  std::vector<Eigen::Index> next() {
    if (pos_ + batch_ > n_) reshuffle();
    std::vector<Eigen::Index> b(order_.begin() + pos_, order_.begin() + pos_ + batch_);
    pos_ += batch_;
    return b;
  }

 private:
  std::uint64_t next_u64() {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  void reshuffle() {
    order_.resize(static_cast<std::size_t>(n_));
    for (Eigen::Index i = 0; i < n_; ++i) order_[static_cast<std::size_t>(i)] = i;
    for (Eigen::Index i = n_ - 1; i > 0; --i)
      std::swap(order_[static_cast<std::size_t>(i)], order_[next_u64() % static_cast<std::uint64_t>(i + 1)]);
    pos_ = 0;
  }
  Eigen::Index n_, batch_, pos_ = 0;
  std::uint64_t state_;
  std::vector<Eigen::Index> order_;
};

namespace detail {
// Per worker: every Linear's input from the forward, then dL/dW += dyᵀ x from the backward.
struct signround_grads final : model::linear_hooks {
  std::map<std::string, model::matrix> x, dW;
  const std::map<std::string, signround_linear*>* trained = nullptr;
  void on_input(std::span<const std::string* const> ls, const model::matrix& in) override {
    for (const std::string* n : ls)
      if (trained->contains(*n)) x[*n] = in;
  }
  void on_output_grad(const std::string& n, const model::matrix& dy) override {
    if (!trained->contains(n)) return;
    const model::matrix& in = x.at(n);
    model::matrix& g = dW[n];
    if (g.size() == 0) g = model::matrix::Zero(dy.cols(), in.cols());
    g.noalias() += dy.transpose() * in;
  }
};
}  // namespace detail

// The layer's output on `x` ([sequences·len, hidden], whole sequences), with the weights in `w`.
inline model::matrix block_output(const model::forward_config& c, const model::layer_weights& w, const model::matrix& x,
                                  Eigen::Index len, int threads) {
  const model::detail::rope_table rope = model::detail::make_rope(len, c.head_dim, c.rope_theta, c.rope_frequencies);
  model::matrix h = x;
  model::detail::for_each_chunk(h.rows(), len, 2048, threads, [&](Eigen::Index r0, Eigen::Index n) {
    model::matrix part = h.middleRows(r0, n);
    model::detail::layer_forward(w, c, rope, part, nullptr);
    h.middleRows(r0, n) = part;
  });
  return h;
}

// The MSE between the layer's output on the sequences `batch` of x and theirs in y, and its gradient dL/dW of
// every Linear named in `trained` (zero for an expert no token reached).
struct block_gradient {
  double loss = 0.0;
  std::map<std::string, model::matrix> dW;
};
template <class Named>
block_gradient block_loss_gradient(const model::forward_config& c, const model::layer_weights& w, const Named& trained,
                                   const model::matrix& x, const model::matrix& y, Eigen::Index len,
                                   const std::vector<Eigen::Index>& batch, int threads) {
  const model::detail::rope_table rope = model::detail::make_rope(len, c.head_dim, c.rope_theta, c.rope_frequencies);
  threads = std::max(1, std::min<int>(threads, static_cast<int>(batch.size())));
  std::map<std::string, signround_linear*> names;
  for (const auto& kv : trained) names[kv.first] = nullptr;
  const double numel = static_cast<double>(batch.size()) * static_cast<double>(len) * static_cast<double>(x.cols());
  std::vector<detail::signround_grads> grads(static_cast<std::size_t>(threads));
  std::vector<double> loss(static_cast<std::size_t>(threads), 0.0);
  auto work = [&](int t) {
    detail::signround_grads& g = grads[static_cast<std::size_t>(t)];
    g.trained = &names;
    for (std::size_t b = static_cast<std::size_t>(t); b < batch.size(); b += static_cast<std::size_t>(threads)) {
      const Eigen::Index r0 = batch[b] * len;
      const model::matrix h = x.middleRows(r0, len);
      model::matrix out = h;
      model::detail::layer_forward(w, c, rope, out, &g);
      const model::matrix diff = out - y.middleRows(r0, len);
      loss[static_cast<std::size_t>(t)] += diff.cast<double>().squaredNorm();
      const model::matrix dy = diff * static_cast<float>(2.0 / numel);
      model::detail::layer_backward(w, c, rope, h, dy, &g);
    }
  };
  run_tasks(threads, threads, [&](std::int64_t t) { work(static_cast<int>(t)); });  // one gradient per thread slot
  block_gradient out;
  for (double l : loss) out.loss += l;
  out.loss /= numel;
  const auto slots = model::linears_of(w, c);
  for (const auto& kv : names) {
    const model::linear& l = *slots.at(kv.first);
    model::matrix dW = model::matrix::Zero(l.weight.rows(), l.weight.cols());
    for (auto& g : grads)
      if (auto f = g.dW.find(kv.first); f != g.dW.end()) dW += f->second;
    out.dW[kv.first] = std::move(dW);
  }
  return out;
}

struct block_training {
  double first_loss = 0.0;  // the batch loss of iteration 0 (the starting rounding)
  double best_loss = 0.0;   // the lowest batch loss, whose iterate is kept
  int best_iter = 0;
  std::vector<double> losses;  // every iteration's batch loss
};

// Trains the Linears named in `trained` (module name -> state) of layer `w` on MSE(layer_q(x), y), y being the
// full-precision layer's output on the full-precision input. On return the trained Linears of `w` hold Ŵ of
// the kept iterate and each state is restored to it.
inline block_training train_block(const model::forward_config& c, model::layer_weights& w,
                                  const std::map<std::string, signround_linear*>& trained, const model::matrix& x,
                                  const model::matrix& y, Eigen::Index len, const signround_options& o, int threads = 1) {
  const auto slots = model::linears_of(w, c);
  auto write = [&] {
    for (const auto& [name, s] : trained) {
      model::linear& l = *slots.at(name);
      const std::vector<float> q = s->dequantized();
      l.weight = Eigen::Map<const model::matrix>(q.data(), l.weight.rows(), l.weight.cols());
    }
  };
  block_training out;
  write();
  if (o.iters <= 0 || trained.empty()) return out;
  const model::detail::rope_table rope = model::detail::make_rope(len, c.head_dim, c.rope_theta, c.rope_frequencies);
  const Eigen::Index sequences = x.rows() / len;
  sequence_sampler sampler(sequences, o.batch, o.seed);
  out.best_loss = std::numeric_limits<double>::infinity();
  for (int it = 0; it < o.iters; ++it) {
    const std::vector<Eigen::Index> batch = sampler.next();
    const block_gradient bg = block_loss_gradient(c, w, trained, x, y, len, batch, threads);
    const double total = bg.loss;
    out.losses.push_back(total);
    if (it == 0) out.first_loss = total;
    if (total < out.best_loss) {
      out.best_loss = total;
      out.best_iter = it;
      for (const auto& [name, s] : trained) s->keep();
    }
    const float lr = signround_lr(o, it, false), mlr = signround_lr(o, it, true);
    for (const auto& [name, s] : trained) {
      const model::matrix& dW = bg.dW.at(name);
      s->step(std::span<const float>(dW.data(), static_cast<std::size_t>(dW.size())), lr, mlr, o);
    }
    write();
  }
  for (const auto& [name, s] : trained) s->restore();
  write();
  return out;
}

}  // namespace pq::pipeline
