// pq/quant/hessian.hpp: the calibration statistics of one Linear's input (H = XᵀX, E[x_j²], activation
// amax, token count), accumulated from activation batches, merged across batches or workers, serialized.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <Eigen/Core>

#include <pq/core/bits.hpp>
#include <pq/quant/error.hpp>

namespace pq {

// Statistics of the input X [tokens, cols] of one Linear (y = W x, W [rows, cols]).
//
//   linear_stats s{"model.layers.0.self_attn.q_proj", 4096};
//   for (batch : calibration) s.add(batch.data(), batch_tokens);   // X row-major [tokens, cols]
//   s.merge(other_worker);                                         // same Linear, other tokens
//   auto bytes = s.to_bytes(); auto back = linear_stats::from_bytes(bytes);
//
// Products are of fp32 inputs in fp64 (exact) and accumulate in fp64. Only the LOWER triangle of `H` is
// maintained (j <= i); use hessian() for the full symmetric matrix. x2_sum is the diagonal of H, kept as
// its own vector so that consumers of E[x_j²] need not touch H.
struct linear_stats {
  std::string name;           // the Linear, for error messages
  index_t cols = 0;           // input features
  Eigen::MatrixXd H;          // Σ_t x_t x_tᵀ, lower triangle, [cols, cols]
  std::vector<double> x2_sum; // Σ_t x_tj²
  float amax = 0.0f;          // max_t,j |x_tj|
  index_t count = 0;          // tokens seen

  linear_stats() = default;
  linear_stats(std::string linear_name, index_t input_features)
      : name(std::move(linear_name)), cols(input_features), H(Eigen::MatrixXd::Zero(cols, cols)),
        x2_sum(static_cast<std::size_t>(cols), 0.0) {
    if (cols <= 0) throw quant_error(name + ": statistics need a positive number of input features");
  }

  // Adds `tokens` rows of X (row-major [tokens, cols]); a non-finite activation is an error naming the
  // Linear, and then nothing is added.
  void add(const float* X, index_t tokens) {
    if (tokens <= 0) return;
    constexpr index_t chunk = 256;  // bounds the fp64 copy
    for (index_t t0 = 0; t0 < tokens; t0 += chunk) check_finite(X + t0 * cols, std::min(chunk, tokens - t0), t0);
    for (index_t t0 = 0; t0 < tokens; t0 += chunk) {
      const index_t n = std::min(chunk, tokens - t0);
      const Eigen::Map<const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> x(
          X + t0 * cols, n, cols);
      const Eigen::MatrixXd xd = x.cast<double>();
      H.selfadjointView<Eigen::Lower>().rankUpdate(xd.transpose());
      for (index_t j = 0; j < cols; ++j) x2_sum[static_cast<std::size_t>(j)] += xd.col(j).squaredNorm();
      amax = std::max(amax, x.cwiseAbs().maxCoeff());
    }
    count += tokens;
  }

  // Adds the statistics of other tokens of the same Linear.
  void merge(const linear_stats& o) {
    if (o.cols != cols)
      throw quant_error(name + ": cannot merge statistics over " + std::to_string(o.cols) + " input features into " +
                        std::to_string(cols));
    H.triangularView<Eigen::Lower>() += o.H;
    for (std::size_t j = 0; j < x2_sum.size(); ++j) x2_sum[j] += o.x2_sum[j];
    amax = std::max(amax, o.amax);
    count += o.count;
  }

  // The full symmetric Σ x xᵀ.
  Eigen::MatrixXd hessian() const { return H.selfadjointView<Eigen::Lower>(); }
  // E[x_j²] per input channel (zeros before any token).
  std::vector<double> x2_mean() const {
    std::vector<double> m(x2_sum);
    if (count > 0)
      for (double& v : m) v /= static_cast<double>(count);
    return m;
  }

  // Little-endian byte stream: "PQLS", u32 version, i64 cols, i64 count, f32 amax, u32 name length, name,
  // f64 x2_sum[cols], f64 lower triangle of H row by row (cols·(cols+1)/2 values).
  std::vector<std::byte> to_bytes() const {
    std::vector<std::byte> out;
    put(out, magic);
    put(out, version);
    put(out, cols);
    put(out, count);
    put(out, amax);
    put(out, static_cast<std::uint32_t>(name.size()));
    for (char c : name) out.push_back(static_cast<std::byte>(c));
    for (double v : x2_sum) put(out, v);
    for (index_t i = 0; i < cols; ++i)
      for (index_t j = 0; j <= i; ++j) put(out, H(i, j));
    return out;
  }
  static linear_stats from_bytes(std::span<const std::byte> in) {
    reader r{in};
    if (r.get<std::uint32_t>() != magic) throw quant_error("linear_stats: not a pq statistics stream (bad magic)");
    if (const auto v = r.get<std::uint32_t>(); v != version)
      throw quant_error("linear_stats: unsupported statistics version " + std::to_string(v));
    const auto c = r.get<index_t>();
    const auto n = r.get<index_t>();
    const auto a = r.get<float>();
    const auto len = r.get<std::uint32_t>();
    std::string nm(len, '\0');
    for (char& ch : nm) ch = static_cast<char>(r.get<std::uint8_t>());
    if (c <= 0 || n < 0 || !(a >= 0.0f) ||
        r.remaining() != (static_cast<std::size_t>(c) + static_cast<std::size_t>(c * (c + 1) / 2)) * sizeof(double))
      throw quant_error("linear_stats '" + nm + "': corrupt or truncated statistics stream");
    linear_stats s(std::move(nm), c);
    s.count = n;
    s.amax = a;
    for (double& v : s.x2_sum) v = r.get<double>();
    for (index_t i = 0; i < c; ++i)
      for (index_t j = 0; j <= i; ++j) s.H(i, j) = r.get<double>();
    return s;
  }

 private:
  static constexpr std::uint32_t magic = 0x534c5150u;  // "PQLS"
  static constexpr std::uint32_t version = 1;

  void check_finite(const float* x, index_t n, index_t first_token) const {
    for (index_t i = 0; i < n * cols; ++i)
      if (!is_finite(x[i]))
        throw quant_error(name + ": non-finite input activation at token " + std::to_string(first_token + i / cols) +
                          ", channel " + std::to_string(i % cols));
  }
  template <class T>
  static void put(std::vector<std::byte>& out, T v) {  // little-endian hosts only (x86-64, aarch64)
    const auto* p = reinterpret_cast<const std::byte*>(&v);
    out.insert(out.end(), p, p + sizeof(T));
  }
  struct reader {
    std::span<const std::byte> in;
    std::size_t at = 0;
    std::size_t remaining() const { return in.size() - at; }
    template <class T>
    T get() {
      if (remaining() < sizeof(T)) throw quant_error("linear_stats: truncated statistics stream");
      T v;
      std::memcpy(&v, in.data() + at, sizeof(T));
      at += sizeof(T);
      return v;
    }
  };
};

}  // namespace pq
