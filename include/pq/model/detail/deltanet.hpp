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
// Qwen3-Next's fused projections hold, per key head g, in_proj_qkvz [q_g k_g v_g z_g] and in_proj_ba [b_g a_g]
// (v_g, z_g, b_g, a_g: the value heads of key head g). `to_split` copies the fused columns into p's split layout;
// otherwise p's columns into the fused ones (the backward's gradients).
inline void deltanet_interleave(const arch::deltanet_config& d, matrix& qkvz, matrix& ba, deltanet_projections& p,
                                bool to_split) {
  const Eigen::Index r = d.value_heads / d.key_heads, dk = d.key_dim, vw = r * d.value_dim;
  const Eigen::Index group = 2 * dk + 2 * vw, kw = d.key_heads * dk;
  auto copy = [to_split](matrix& fused, Eigen::Index fc, matrix& split, Eigen::Index sc, Eigen::Index width) {
    if (to_split)
      split.middleCols(sc, width) = fused.middleCols(fc, width);
    else
      fused.middleCols(fc, width) = split.middleCols(sc, width);
  };
  for (Eigen::Index g = 0; g < d.key_heads; ++g) {
    copy(qkvz, g * group, p.qkv, g * dk, dk);
    copy(qkvz, g * group + dk, p.qkv, kw + g * dk, dk);
    copy(qkvz, g * group + 2 * dk, p.qkv, 2 * kw + g * vw, vw);
    copy(qkvz, g * group + 2 * dk + vw, p.z, g * vw, vw);
    copy(ba, g * 2 * r, p.b, g * r, r);
    copy(ba, g * 2 * r + r, p.a, g * r, r);
  }
}

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
  matrix qkvz = apply_linear(w.qkv, xn), ba = apply_linear(w.b, xn);
  const arch::deltanet_config& d = c.deltanet;
  deltanet_projections p{matrix(xn.rows(), d.conv_channels()), matrix(xn.rows(), d.value_heads * d.value_dim),
                         matrix(xn.rows(), d.value_heads), matrix(xn.rows(), d.value_heads)};
  deltanet_interleave(d, qkvz, ba, p, true);
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

// ---- backward ----
// The delta rule per value head and token, with q, k the normalised (q also scaled) heads and S_{t-1} the state:
//   S' = alpha S_{t-1};  u = S'^T k;  delta = beta (v - u);  S_t = S' + k delta^T;  o = S_t^T q
// run in reverse with dS = d/dS_t carried back through time:
//   dS += q do^T;  dq = S_t do;  dk = dS delta + S' du;  ddelta = dS^T k;  dbeta = ddelta . (v - u);
//   dv = beta ddelta;  du = -beta ddelta;  dS' = dS + k du^T;  dalpha = <dS', S_{t-1}>;  dS <- alpha dS'
// The states come from checkpoints every `deltanet_checkpoint` tokens, the chunk recomputed before its reverse
// pass: memory for len / 64 + 64 states per head instead of len.
inline constexpr Eigen::Index deltanet_checkpoint = 64;

// Gradients with respect to deltanet_projections' members (same shapes).
using deltanet_projection_grads = deltanet_projections;

// d/dx of y = s * x / sqrt(|x|^2 + 1e-6) given dy: s (r dy - x r^3 (x . dy)), r = 1 / sqrt(|x|^2 + 1e-6).
inline vector l2norm_backward(const vector& x, const vector& dy, float s) {
  const float r = 1.0f / std::sqrt(x.squaredNorm() + 1e-6f);
  return s * (r * dy - x * (r * r * r * x.dot(dy)));
}

// The backward of deltanet_tokens over one whole sequence (rows [r0, r0 + n) of p, from the zero state), given
// dout = d/d(its output) [n, value_heads * value_dim]: adds the projections' gradients into rows [r0, r0 + n) of g.
inline void deltanet_sequence_backward(const deltanet_weights& w, const forward_config& c,
                                       const deltanet_projections& p, Eigen::Index r0, Eigen::Index n,
                                       const Eigen::Ref<const matrix>& dout, deltanet_projection_grads& g) {
  const arch::deltanet_config& d = c.deltanet;
  const Eigen::Index C = d.conv_channels(), K = d.conv_kernel, dk = d.key_dim, dv = d.value_dim;
  const Eigen::Index kw = d.key_heads * dk, group = d.value_heads / d.key_heads;
  const float qscale = 1.0f / std::sqrt(static_cast<float>(dk));
  // The causal conv and SiLU, recomputed: acc(t, ch) = sum_j conv(ch, j) qkv(t - (K-1) + j, ch).
  matrix acc = matrix::Zero(n, C);
  for (Eigen::Index t = 0; t < n; ++t)
    for (Eigen::Index j = 0; j < K; ++j)
      if (const Eigen::Index src = t - (K - 1) + j; src >= 0)
        acc.row(t) += p.qkv.row(r0 + src).cwiseProduct(w.conv.col(j).transpose());
  const matrix x = acc.unaryExpr([](float a) { return a * sigmoid(a); });
  matrix dx = matrix::Zero(n, C);

  // Normalised q (scaled) and k of each key head, token by token: [n, kw].
  matrix qn(n, kw), kn(n, kw);
  for (Eigen::Index t = 0; t < n; ++t)
    for (Eigen::Index kh = 0; kh < d.key_heads; ++kh) {
      const auto q = x.row(t).segment(kh * dk, dk), k = x.row(t).segment(kw + kh * dk, dk);
      qn.row(t).segment(kh * dk, dk) = q * (qscale / std::sqrt(q.squaredNorm() + 1e-6f));
      kn.row(t).segment(kh * dk, dk) = k * (1.0f / std::sqrt(k.squaredNorm() + 1e-6f));
    }
  matrix dqn = matrix::Zero(n, kw), dkn = matrix::Zero(n, kw);

  const Eigen::Index chunks = (n + deltanet_checkpoint - 1) / deltanet_checkpoint;
  std::vector<matrix> checkpoint(static_cast<std::size_t>(chunks)), prev(static_cast<std::size_t>(deltanet_checkpoint));
  vector alpha(n), beta(n), q(dk), k(dk);
  row_vector v(dv), u(dv), delta(dv), dO(dv), ddelta(dv), du(dv);
  matrix o(n, dv), S(dk, dv), Sp(dk, dv), dS(dk, dv), dSp(dk, dv);
  for (Eigen::Index h = 0; h < d.value_heads; ++h) {
    const Eigen::Index kh = h / group, vc = 2 * kw + h * dv;
    for (Eigen::Index t = 0; t < n; ++t) {
      beta(t) = sigmoid(p.b(r0 + t, h));
      alpha(t) = std::exp(-std::exp(w.a_log(h)) * softplus(p.a(r0 + t, h) + w.dt_bias(h)));
    }
    auto step = [&](Eigen::Index t) {  // S_{t-1} in S -> S_t in S; leaves S', u, delta
      q = qn.row(t).segment(kh * dk, dk).transpose();
      k = kn.row(t).segment(kh * dk, dk).transpose();
      v = x.row(t).segment(vc, dv);
      Sp = alpha(t) * S;
      u.noalias() = k.transpose() * Sp;
      delta = (v - u) * beta(t);
      S = Sp;
      S.noalias() += k * delta;
    };
    // Forward: the mixer output before the gated norm, and the checkpoints.
    S.setZero();
    for (Eigen::Index t = 0; t < n; ++t) {
      if (t % deltanet_checkpoint == 0) checkpoint[static_cast<std::size_t>(t / deltanet_checkpoint)] = S;
      step(t);
      o.row(t).noalias() = q.transpose() * S;
    }
    // The gated RMSNorm: out = rmsnorm(o) * gain * silu(z).
    const auto z = p.z.block(r0, h * dv, n, dv);
    const matrix normed = rmsnorm(o, w.norm, c.rms_eps);
    matrix dnormed(n, dv);
    for (Eigen::Index t = 0; t < n; ++t)
      for (Eigen::Index i = 0; i < dv; ++i) {
        const float zz = z(t, i), s = sigmoid(zz), dy = dout(t, h * dv + i);
        dnormed(t, i) = dy * zz * s;
        g.z(r0 + t, h * dv + i) += dy * normed(t, i) * s * (1.0f + zz * (1.0f - s));
      }
    const matrix dov = rmsnorm_backward(o, w.norm, c.rms_eps, dnormed);
    // Reverse through time, chunk by chunk.
    dS.setZero();
    for (Eigen::Index ch = chunks - 1; ch >= 0; --ch) {
      const Eigen::Index t0 = ch * deltanet_checkpoint, t1 = std::min(n, t0 + deltanet_checkpoint);
      S = checkpoint[static_cast<std::size_t>(ch)];
      for (Eigen::Index t = t0; t < t1; ++t) {
        prev[static_cast<std::size_t>(t - t0)] = S;
        step(t);
      }
      for (Eigen::Index t = t1 - 1; t >= t0; --t) {
        const matrix& Sprev = prev[static_cast<std::size_t>(t - t0)];
        S = Sprev;
        step(t);  // S = S_t, Sp = S', u, delta
        dO = dov.row(t);
        dS.noalias() += q * dO;
        dqn.row(t).segment(kh * dk, dk).noalias() += (S * dO.transpose()).transpose();
        dkn.row(t).segment(kh * dk, dk).noalias() += (dS * delta.transpose()).transpose();
        ddelta.noalias() = k.transpose() * dS;
        g.b(r0 + t, h) += ddelta.dot(v - u) * beta(t) * (1.0f - beta(t));
        dx.row(t).segment(vc, dv) += beta(t) * ddelta;
        du = -beta(t) * ddelta;
        dkn.row(t).segment(kh * dk, dk).noalias() += (Sp * du.transpose()).transpose();
        dSp = dS;
        dSp.noalias() += k * du;
        const float dalpha = dSp.cwiseProduct(Sprev).sum();
        const float pre = p.a(r0 + t, h) + w.dt_bias(h);
        g.a(r0 + t, h) += dalpha * alpha(t) * -std::exp(w.a_log(h)) * sigmoid(pre);
        dS = alpha(t) * dSp;
      }
    }
  }
  // Back through the l2 norms, SiLU and the conv.
  for (Eigen::Index t = 0; t < n; ++t)
    for (Eigen::Index kh = 0; kh < d.key_heads; ++kh) {
      dx.row(t).segment(kh * dk, dk) =
          l2norm_backward(x.row(t).segment(kh * dk, dk).transpose(), dqn.row(t).segment(kh * dk, dk).transpose(),
                          qscale).transpose();
      dx.row(t).segment(kw + kh * dk, dk) =
          l2norm_backward(x.row(t).segment(kw + kh * dk, dk).transpose(),
                          dkn.row(t).segment(kh * dk, dk).transpose(), 1.0f).transpose();
    }
  const matrix dacc = acc.binaryExpr(dx, [](float a, float dy) {
    const float s = sigmoid(a);
    return dy * s * (1.0f + a * (1.0f - s));
  });
  for (Eigen::Index t = 0; t < n; ++t)
    for (Eigen::Index j = 0; j < K; ++j)
      if (const Eigen::Index src = t - (K - 1) + j; src >= 0)
        g.qkv.row(r0 + src) += dacc.row(t).cwiseProduct(w.conv.col(j).transpose());
}

// Given the layer input h and dh2 = d/d(the DeltaNet half's output, residual included), returns the gradient that
// flows to h through the mixer (the residual's dh2 not included) and reports the output gradients of out_proj and
// the input projections (the fused ones for Qwen3-Next).
inline matrix deltanet_block_backward(const layer_weights& w, const forward_config& c, Eigen::Index len,
                                      const matrix& h, const matrix& dh2, linear_hooks* hooks) {
  const deltanet_weights& dw = w.delta;
  const matrix xn = rmsnorm(h, w.input_norm, c.rms_eps);
  const deltanet_projections p = deltanet_project(dw, c, xn, nullptr);
  report_grad(hooks, dw.out, dh2);
  const matrix dout = linear_backward(dw.out, dh2);
  deltanet_projection_grads g{matrix::Zero(p.qkv.rows(), p.qkv.cols()), matrix::Zero(p.z.rows(), p.z.cols()),
                              matrix::Zero(p.b.rows(), p.b.cols()), matrix::Zero(p.a.rows(), p.a.cols())};
  for (Eigen::Index s0 = 0; s0 < h.rows(); s0 += len)
    deltanet_sequence_backward(dw, c, p, s0, len, dout.middleRows(s0, len), g);
  matrix dxn;
  if (!dw.interleaved()) {
    report_grad(hooks, dw.qkv, g.qkv);
    report_grad(hooks, dw.z, g.z);
    report_grad(hooks, dw.b, g.b);
    report_grad(hooks, dw.a, g.a);
    dxn = linear_backward(dw.qkv, g.qkv);
    dxn.noalias() += linear_backward(dw.z, g.z);
    dxn.noalias() += linear_backward(dw.b, g.b);
    dxn.noalias() += linear_backward(dw.a, g.a);
  } else {
    matrix dqkvz(h.rows(), dw.qkv.weight.rows()), dba(h.rows(), dw.b.weight.rows());
    deltanet_interleave(c.deltanet, dqkvz, dba, g, false);
    report_grad(hooks, dw.qkv, dqkvz);
    report_grad(hooks, dw.b, dba);
    dxn = linear_backward(dw.qkv, dqkvz);
    dxn.noalias() += linear_backward(dw.b, dba);
  }
  return rmsnorm_backward(h, w.input_norm, c.rms_eps, dxn);
}

}  // namespace pq::model::detail
