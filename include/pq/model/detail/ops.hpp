// pq/model/detail/ops.hpp: fp32 building blocks of the decoder layer (forward and backward).
#pragma once
#include <pq/model/hooks.hpp>
#include <pq/model/layer_weights.hpp>
#include <pq/model/tensor.hpp>

#include <array>
#include <bit>
#include <initializer_list>
#include <span>
#include <string>
#include <cmath>
#include <cstdint>
#include <limits>

namespace pq::model::detail {

inline void report_input(linear_hooks* hooks, std::initializer_list<const linear*> ls, const matrix& x) {
  if (!hooks || x.rows() == 0) return;
  std::array<const std::string*, 3> names{};
  std::size_t n = 0;
  for (const linear* l : ls) names[n++] = &l->name;
  hooks->on_input(std::span<const std::string* const>(names.data(), n), x);
}
inline void report_grad(linear_hooks* hooks, const linear& l, const matrix& dy) {
  if (hooks && dy.rows()) hooks->on_output_grad(l.name, dy);
}

inline matrix apply_linear(const linear& l, const matrix& x) {
  matrix y = x * l.weight.transpose();
  if (l.bias.size()) y.rowwise() += l.bias.transpose();
  return y;
}

// y = x W^T  =>  dx = dy W
inline matrix linear_backward(const linear& l, const matrix& dy) { return dy * l.weight; }

// HF RMSNorm: x * rsqrt(mean(x^2) + eps) * w, row by row of a [rows, n] block of width n
// starting at column `col` (n = hidden for the layer norms, head_dim for q/k norms).
inline void rmsnorm_inplace(Eigen::Ref<matrix> x, const vector& w, double eps) {
  for (Eigen::Index r = 0; r < x.rows(); ++r) {
    const float ms = x.row(r).squaredNorm() / static_cast<float>(x.cols());
    const float inv = 1.0f / std::sqrt(ms + static_cast<float>(eps));
    x.row(r) = (x.row(r) * inv).cwiseProduct(w.transpose());
  }
}
inline matrix rmsnorm(const matrix& x, const vector& w, double eps) {
  matrix y = x;
  rmsnorm_inplace(y, w, eps);
  return y;
}
// Gradient of rmsnorm with respect to its input x, given dy.
inline matrix rmsnorm_backward(const matrix& x, const vector& w, double eps, const matrix& dy) {
  matrix dx(x.rows(), x.cols());
  const float n = static_cast<float>(x.cols());
  for (Eigen::Index r = 0; r < x.rows(); ++r) {
    const float inv = 1.0f / std::sqrt(x.row(r).squaredNorm() / n + static_cast<float>(eps));
    const row_vector g = dy.row(r).cwiseProduct(w.transpose());
    const float gx = g.dot(x.row(r));
    dx.row(r) = g * inv - x.row(r) * (inv * inv * inv * gx / n);
  }
  return dx;
}

// Per-head RMSNorm (qwen3 q_norm / k_norm) over each head_dim slice.
inline void head_rmsnorm_inplace(matrix& x, const vector& w, Eigen::Index head_dim, double eps) {
  for (Eigen::Index h = 0; h < x.cols() / head_dim; ++h) rmsnorm_inplace(x.middleCols(h * head_dim, head_dim), w, eps);
}
inline matrix head_rmsnorm_backward(const matrix& x, const vector& w, Eigen::Index head_dim, double eps,
                                    const matrix& dy) {
  matrix dx(x.rows(), x.cols());
  for (Eigen::Index h = 0; h < x.cols() / head_dim; ++h)
    dx.middleCols(h * head_dim, head_dim) =
        rmsnorm_backward(x.middleCols(h * head_dim, head_dim), w, eps, dy.middleCols(h * head_dim, head_dim));
  return dx;
}

// fp32 -> bf16 -> fp32, round to nearest even (finite inputs).
inline float round_to_bf16(float x) {
  const std::uint32_t u = std::bit_cast<std::uint32_t>(x);
  return std::bit_cast<float>((u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u);
}
// fp32 -> fp16 -> fp32 for the normal range the rotary frequencies live in.
inline float round_to_fp16(float x) {
  int e = 0;
  const float m = std::frexp(x, &e);  // x = m * 2^e, m in [0.5, 1)
  return std::ldexp(std::nearbyint(std::ldexp(m, 11)), e - 11);
}

// Rotary tables for positions 0..len-1 in the HF "default" convention, computed in fp32 as
// the reference does: inv_freq = 1 / theta^(2i/d) stored in the precision of the checkpoint
// (HF casts this buffer with the model), angle = pos * inv_freq, [cos|cos], [sin|sin].
struct rope_table {
  matrix cos, sin;  // [len, head_dim]
};
inline rope_table make_rope(Eigen::Index len, Eigen::Index head_dim, double theta, rope_precision precision) {
  rope_table t{matrix(len, head_dim), matrix(len, head_dim)};
  const Eigen::Index half = head_dim / 2;
  for (Eigen::Index i = 0; i < half; ++i) {
    float inv = 1.0f / std::pow(static_cast<float>(theta), static_cast<float>(2 * i) / static_cast<float>(head_dim));
    if (precision == rope_precision::bf16) inv = round_to_bf16(inv);
    if (precision == rope_precision::fp16) inv = round_to_fp16(inv);
    for (Eigen::Index p = 0; p < len; ++p) {
      const float a = static_cast<float>(p) * inv;
      t.cos(p, i) = t.cos(p, i + half) = static_cast<float>(std::cos(static_cast<double>(a)));
      t.sin(p, i) = t.sin(p, i + half) = static_cast<float>(std::sin(static_cast<double>(a)));
    }
  }
  return t;
}

// x*cos + rotate_half(x)*sin on the first rope.cos.cols() dims of every head (all of them unless the rotary is
// partial; the rest pass through) of rows that hold whole sequences of rope.cos.rows() tokens; `inverse` applies
// the transpose (the backward of the rotation).
inline void apply_rope(matrix& x, const rope_table& rope, Eigen::Index head_dim, bool inverse) {
  const Eigen::Index len = rope.cos.rows(), half = rope.cos.cols() / 2;
  const float sgn = inverse ? -1.0f : 1.0f;
  for (Eigen::Index r = 0; r < x.rows(); ++r) {
    const Eigen::Index p = r % len;
    for (Eigen::Index h = 0; h < x.cols() / head_dim; ++h) {
      float* v = x.data() + r * x.cols() + h * head_dim;
      for (Eigen::Index i = 0; i < half; ++i) {
        const float a = v[i], b = v[i + half];
        const float c = rope.cos(p, i), s = sgn * rope.sin(p, i);
        v[i] = a * c - b * s;
        v[i + half] = b * c + a * s;
      }
    }
  }
}

// Causal softmax(q k^T / sqrt(d)) for one head of one sequence: P is [len, len], lower
// triangular (only that triangle of q k^T is computed).
inline matrix attention_probs(const Eigen::Ref<const matrix>& q, const Eigen::Ref<const matrix>& k) {
  const float scale = 1.0f / std::sqrt(static_cast<float>(q.cols()));
  matrix s = matrix::Zero(q.rows(), k.rows());
  s.triangularView<Eigen::Lower>() = q * k.transpose();
  for (Eigen::Index i = 0; i < s.rows(); ++i) {
    auto row = s.row(i).head(i + 1);
    const float m = row.maxCoeff() * scale;
    row = (row.array() * scale - m).exp().matrix();
    row /= row.sum();
  }
  return s;
}

// Attention output [rows, heads*head_dim] from roped q [rows, heads*hd], k and v
// [rows, kv_heads*hd]; rows hold whole sequences of `len` tokens; GQA maps head h to kv h/group.
inline matrix attention(const matrix& q, const matrix& k, const matrix& v, Eigen::Index len,
                        Eigen::Index head_dim) {
  const Eigen::Index heads = q.cols() / head_dim, group = heads / (k.cols() / head_dim);
  matrix out(q.rows(), q.cols());
  for (Eigen::Index s0 = 0; s0 < q.rows(); s0 += len)
    for (Eigen::Index h = 0; h < heads; ++h) {
      const Eigen::Index kh = h / group;
      const matrix p = attention_probs(q.block(s0, h * head_dim, len, head_dim), k.block(s0, kh * head_dim, len, head_dim));
      out.block(s0, h * head_dim, len, head_dim).noalias() = p.triangularView<Eigen::Lower>() * v.block(s0, kh * head_dim, len, head_dim);
    }
  return out;
}

struct attention_grads {
  matrix dq, dk, dv;
};
inline attention_grads attention_backward(const matrix& q, const matrix& k, const matrix& v, Eigen::Index len,
                                          Eigen::Index head_dim, const matrix& dout) {
  const Eigen::Index heads = q.cols() / head_dim, group = heads / (k.cols() / head_dim);
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  attention_grads g{matrix(q.rows(), q.cols()), matrix::Zero(k.rows(), k.cols()), matrix::Zero(v.rows(), v.cols())};
  for (Eigen::Index s0 = 0; s0 < q.rows(); s0 += len)
    for (Eigen::Index h = 0; h < heads; ++h) {
      const Eigen::Index kh = h / group;
      auto qh = q.block(s0, h * head_dim, len, head_dim);
      auto kb = k.block(s0, kh * head_dim, len, head_dim);
      auto vb = v.block(s0, kh * head_dim, len, head_dim);
      auto doh = dout.block(s0, h * head_dim, len, head_dim);
      const matrix p = attention_probs(qh, kb);
      matrix dp = doh * vb.transpose();
      g.dv.block(s0, kh * head_dim, len, head_dim).noalias() += p.transpose() * doh;
      const vector rs = dp.cwiseProduct(p).rowwise().sum();
      matrix ds = p.cwiseProduct(dp.colwise() - rs) * scale;
      g.dq.block(s0, h * head_dim, len, head_dim).noalias() = ds * kb;
      g.dk.block(s0, kh * head_dim, len, head_dim).noalias() += ds.transpose() * qh;
    }
  return g;
}

inline float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

// silu(a) * b, the SwiGLU product.
inline matrix swiglu(const matrix& a, const matrix& b) {
  return a.binaryExpr(b, [](float x, float y) { return x * sigmoid(x) * y; });
}

}  // namespace pq::model::detail
