// pq/model/detail/deltanet.hpp: the gated DeltaNet mixer of Qwen3-Next and Qwen3.5 (transformers'
// Qwen3_5MoeGatedDeltaNet, the recurrent form of the gated delta rule): in_proj_qkv -> depthwise causal conv1d ->
// SiLU -> q, k, v; q and k l2-normalised per head (q also scaled by 1/sqrt(key_dim)); decay g = -exp(A_log) *
// softplus(a + dt_bias), beta = sigmoid(b); per value head the state S [key_dim, value_dim] follows
//   S <- exp(g) S;  S <- S + k (beta (v - S^T k))^T;  o = S^T q
// (value head h reads key head h / (value_heads / key_heads)); o is RMS-normalised per head, scaled by the gated
// norm's gain and by silu(z), and projected by out_proj. One step function serves the whole-sequence forward and the
// incremental decoder, which carries the state (conv inputs of the last kernel-1 tokens, S per value head).
#pragma once
#include <pq/model/detail/ops.hpp>
#include <pq/model/forward_config.hpp>
#include <pq/model/hooks.hpp>
#include <pq/model/layer_weights.hpp>

#include <cmath>
#include <vector>

namespace pq::model::detail {

// The recurrent state of one sequence in one DeltaNet layer.
struct deltanet_state {
  matrix conv;           // [kernel - 1, channels]: the conv inputs of the previous tokens (zeros before the first)
  std::vector<matrix> s; // per value head [key_dim, value_dim]
};
inline deltanet_state deltanet_initial_state(const forward_config& c) {
  const arch::deltanet_config& d = c.deltanet;
  return {matrix::Zero(d.conv_kernel - 1, d.conv_channels()),
          std::vector<matrix>(static_cast<std::size_t>(d.value_heads), matrix::Zero(d.key_dim, d.value_dim))};
}

// The projections of rows xn, in the split layout: qkv [rows, channels] (q of every key head, k, v of every value
// head), z [rows, value_heads * value_dim], b and a [rows, value_heads].
struct deltanet_projections {
  matrix qkv, z, b, a;
};
inline deltanet_projections deltanet_project(const deltanet_weights& w, const forward_config& c, const matrix& xn,
                                             linear_hooks* hooks) {
  if (!w.interleaved()) {
    report_input(hooks, {&w.qkv, &w.z}, xn);
    report_input(hooks, {&w.b, &w.a}, xn);
    return {apply_linear(w.qkv, xn), apply_linear(w.z, xn), apply_linear(w.b, xn), apply_linear(w.a, xn)};
  }
  // Qwen3-Next: in_proj_qkvz holds [q k v z] per key head, in_proj_ba [b a] per key head.
  report_input(hooks, {&w.qkv}, xn);
  report_input(hooks, {&w.b}, xn);
  const matrix qkvz = apply_linear(w.qkv, xn), ba = apply_linear(w.b, xn);
  const arch::deltanet_config& d = c.deltanet;
  const Eigen::Index kh = d.key_heads, r = d.value_heads / d.key_heads, dk = d.key_dim, vw = r * d.value_dim;
  const Eigen::Index group = 2 * dk + 2 * vw, kw = kh * dk;
  deltanet_projections p{matrix(xn.rows(), d.conv_channels()), matrix(xn.rows(), kh * vw), matrix(xn.rows(), kh * r),
                         matrix(xn.rows(), kh * r)};
  for (Eigen::Index g = 0; g < kh; ++g) {
    p.qkv.middleCols(g * dk, dk) = qkvz.middleCols(g * group, dk);
    p.qkv.middleCols(kw + g * dk, dk) = qkvz.middleCols(g * group + dk, dk);
    p.qkv.middleCols(2 * kw + g * vw, vw) = qkvz.middleCols(g * group + 2 * dk, vw);
    p.z.middleCols(g * vw, vw) = qkvz.middleCols(g * group + 2 * dk + vw, vw);
    p.b.middleCols(g * r, r) = ba.middleCols(g * 2 * r, r);
    p.a.middleCols(g * r, r) = ba.middleCols(g * 2 * r + r, r);
  }
  return p;
}

inline float softplus(float x) { return x > 20.0f ? x : std::log1p(std::exp(x)); }

// Rows [r0, r0 + n) of p are consecutive tokens of one sequence that continue `st`; returns their mixer output
// before out_proj ([n, value_heads * value_dim], gated-normed) and advances `st`.
inline matrix deltanet_tokens(const deltanet_weights& w, const forward_config& c, const deltanet_projections& p,
                              Eigen::Index r0, Eigen::Index n, deltanet_state& st) {
  const arch::deltanet_config& d = c.deltanet;
  const Eigen::Index C = d.conv_channels(), K = d.conv_kernel, dk = d.key_dim, dv = d.value_dim;
  const Eigen::Index kw = d.key_heads * dk, group = d.value_heads / d.key_heads;
  const float qscale = 1.0f / std::sqrt(static_cast<float>(dk));
  matrix out(n, d.value_heads * dv);
  // The conv window: the previous K-1 inputs, then this token's.
  matrix window(K, C);
  row_vector x(C), kv(dv), delta(dv);
  vector q(dk), k(dk);
  for (Eigen::Index t = 0; t < n; ++t) {
    window.topRows(K - 1) = st.conv;
    window.row(K - 1) = p.qkv.row(r0 + t);
    for (Eigen::Index ch = 0; ch < C; ++ch) {
      float acc = 0;
      for (Eigen::Index j = 0; j < K; ++j) acc += w.conv(ch, j) * window(j, ch);
      x(ch) = acc * sigmoid(acc);
    }
    st.conv = window.bottomRows(K - 1);
    for (Eigen::Index h = 0; h < d.value_heads; ++h) {
      const Eigen::Index g = h / group;
      q = x.segment(g * dk, dk).transpose();
      k = x.segment(kw + g * dk, dk).transpose();
      q *= 1.0f / std::sqrt(q.squaredNorm() + 1e-6f);
      k *= 1.0f / std::sqrt(k.squaredNorm() + 1e-6f);
      q *= qscale;
      const float beta = sigmoid(p.b(r0 + t, h));
      const float decay = std::exp(-std::exp(w.a_log(h)) * softplus(p.a(r0 + t, h) + w.dt_bias(h)));
      matrix& S = st.s[static_cast<std::size_t>(h)];
      S *= decay;
      kv.noalias() = k.transpose() * S;
      delta = (x.segment(2 * kw + h * dv, dv) - kv) * beta;
      S.noalias() += k * delta;
      out.block(t, h * dv, 1, dv).noalias() = q.transpose() * S;
    }
  }
  // Gated RMSNorm per value head: rmsnorm(o) * gain * silu(z).
  for (Eigen::Index h = 0; h < d.value_heads; ++h) rmsnorm_inplace(out.middleCols(h * dv, dv), w.norm, c.rms_eps);
  const auto z = p.z.middleRows(r0, n);
  out = out.binaryExpr(z, [](float o, float zz) { return o * zz * sigmoid(zz); });
  return out;
}

// The DeltaNet half of layer w on h in place (rows: whole sequences of `len` tokens): input norm, the mixer from a
// zero state per sequence, out_proj, residual.
inline void deltanet_block(const layer_weights& w, const forward_config& c, Eigen::Index len, matrix& h,
                           linear_hooks* hooks) {
  const matrix xn = rmsnorm(h, w.input_norm, c.rms_eps);
  const deltanet_projections p = deltanet_project(w.delta, c, xn, hooks);
  matrix o(h.rows(), c.deltanet.value_heads * c.deltanet.value_dim);
  for (Eigen::Index s0 = 0; s0 < h.rows(); s0 += len) {
    deltanet_state st = deltanet_initial_state(c);
    o.middleRows(s0, len) = deltanet_tokens(w.delta, c, p, s0, len, st);
  }
  report_input(hooks, {&w.delta.out}, o);
  h.noalias() += apply_linear(w.delta.out, o);
}

}  // namespace pq::model::detail
