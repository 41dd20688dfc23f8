// pq/model/detail/layer.hpp: one decoder layer on a chunk of whole sequences: forward, and backward by recomputation.
#pragma once
#include <pq/model/detail/deltanet.hpp>
#include <pq/model/detail/ops.hpp>
#include <pq/model/forward_config.hpp>
#include <pq/model/hooks.hpp>
#include <pq/model/layer_weights.hpp>

#include <algorithm>
#include <array>
#include <numeric>
#include <variant>
#include <vector>

namespace pq::model::detail {

// ---- MLP (SwiGLU) ----
inline matrix mlp_forward(const mlp_weights& w, const matrix& x, linear_hooks* hooks) {
  report_input(hooks, {&w.gate, &w.up}, x);
  const matrix m = swiglu(apply_linear(w.gate, x), apply_linear(w.up, x));
  report_input(hooks, {&w.down}, m);
  return apply_linear(w.down, m);
}
// Returns dx given dy = d/d(mlp output); reports the output gradients of its three Linears.
inline matrix mlp_backward(const mlp_weights& w, const matrix& x, const matrix& dy, linear_hooks* hooks) {
  const matrix a = apply_linear(w.gate, x), b = apply_linear(w.up, x);
  report_grad(hooks, w.down, dy);
  const matrix dm = linear_backward(w.down, dy);
  matrix da(a.rows(), a.cols()), db(a.rows(), a.cols());
  for (Eigen::Index i = 0; i < a.size(); ++i) {
    const float s = sigmoid(a.data()[i]), av = a.data()[i];
    da.data()[i] = dm.data()[i] * b.data()[i] * s * (1.0f + av * (1.0f - s));
    db.data()[i] = dm.data()[i] * av * s;
  }
  report_grad(hooks, w.gate, da);
  report_grad(hooks, w.up, db);
  matrix dx = linear_backward(w.gate, da);
  dx.noalias() += linear_backward(w.up, db);
  return dx;
}

// ---- MoE routing ----
struct routing {
  matrix probs;                           // [rows, experts] softmax of router logits
  std::vector<std::vector<Eigen::Index>> rows;  // per expert: the rows routed to it
  std::vector<std::vector<float>> weight;       // per expert: their routing weights
  std::vector<std::vector<int>> chosen;         // per row: the selected experts in order
};
inline routing route(const moe_weights& w, const moe_config& c, const matrix& x) {
  const Eigen::Index n = x.rows();
  const int E = c.num_experts, k = c.experts_per_token;
  routing r{x * w.router.transpose(), std::vector<std::vector<Eigen::Index>>(E),
            std::vector<std::vector<float>>(E), std::vector<std::vector<int>>(static_cast<std::size_t>(n))};
  std::vector<int> idx(static_cast<std::size_t>(E));
  for (Eigen::Index t = 0; t < n; ++t) {
    auto row = r.probs.row(t);
    row = (row.array() - row.maxCoeff()).exp().matrix();
    row /= row.sum();
    std::iota(idx.begin(), idx.end(), 0);
    std::partial_sort(idx.begin(), idx.begin() + k, idx.end(),
                      [&](int a, int b) { return row(a) > row(b) || (row(a) == row(b) && a < b); });
    float sum = 0;
    for (int j = 0; j < k; ++j) sum += row(idx[j]);
    for (int j = 0; j < k; ++j) {
      const int e = idx[static_cast<std::size_t>(j)];
      r.rows[e].push_back(t);
      r.weight[e].push_back(c.renormalize_top_k ? row(e) / sum : row(e));
      r.chosen[static_cast<std::size_t>(t)].push_back(e);
    }
  }
  return r;
}
inline matrix gather_rows(const matrix& x, const std::vector<Eigen::Index>& rows) {
  matrix g(static_cast<Eigen::Index>(rows.size()), x.cols());
  for (std::size_t i = 0; i < rows.size(); ++i) g.row(static_cast<Eigen::Index>(i)) = x.row(rows[i]);
  return g;
}

inline matrix moe_forward(const moe_weights& w, const moe_config& c, const matrix& x, linear_hooks* hooks) {
  const routing r = route(w, c, x);
  matrix out = matrix::Zero(x.rows(), x.cols());
  for (int e = 0; e < c.num_experts; ++e) {
    if (r.rows[e].empty()) continue;
    const matrix y = mlp_forward(w.experts[e], gather_rows(x, r.rows[e]), hooks);
    for (std::size_t i = 0; i < r.rows[e].size(); ++i)
      out.row(r.rows[e][i]) += r.weight[e][i] * y.row(static_cast<Eigen::Index>(i));
  }
  if (w.shared) {
    const matrix ys = mlp_forward(*w.shared, x, hooks);
    const vector g = (x * w.shared_gate.transpose()).unaryExpr([](float z) { return sigmoid(z); });
    out.array() += ys.array().colwise() * g.array();
  }
  return out;
}

// Backward of the MoE block including the router softmax and the shared-expert gate.
inline matrix moe_backward(const moe_weights& w, const moe_config& c, const matrix& x, const matrix& dy,
                           linear_hooks* hooks) {
  const routing r = route(w, c, x);
  matrix dx = matrix::Zero(x.rows(), x.cols());
  matrix dweight = matrix::Zero(x.rows(), c.num_experts);  // d loss / d routing weight
  for (int e = 0; e < c.num_experts; ++e) {
    if (r.rows[e].empty()) continue;
    const matrix xe = gather_rows(x, r.rows[e]);
    const matrix ye = mlp_forward(w.experts[e], xe, nullptr);
    matrix dye = gather_rows(dy, r.rows[e]);
    for (std::size_t i = 0; i < r.rows[e].size(); ++i) {
      const Eigen::Index t = r.rows[e][i], ii = static_cast<Eigen::Index>(i);
      dweight(t, e) = dye.row(ii).dot(ye.row(ii));
      dye.row(ii) *= r.weight[e][i];
    }
    const matrix dxe = mlp_backward(w.experts[e], xe, dye, hooks);
    for (std::size_t i = 0; i < r.rows[e].size(); ++i) dx.row(r.rows[e][i]) += dxe.row(static_cast<Eigen::Index>(i));
  }
  matrix dlogits = matrix::Zero(x.rows(), c.num_experts);
  for (Eigen::Index t = 0; t < x.rows(); ++t) {
    const auto& sel = r.chosen[static_cast<std::size_t>(t)];
    row_vector dp = row_vector::Zero(c.num_experts);
    if (c.renormalize_top_k) {
      float sum = 0, wdw = 0;
      for (int e : sel) sum += r.probs(t, e);
      for (int e : sel) wdw += dweight(t, e) * r.probs(t, e) / sum;
      for (int e : sel) dp(e) = (dweight(t, e) - wdw) / sum;
    } else {
      for (int e : sel) dp(e) = dweight(t, e);
    }
    const float pdp = r.probs.row(t).dot(dp);
    dlogits.row(t) = r.probs.row(t).cwiseProduct(dp.array().matrix() - row_vector::Constant(c.num_experts, pdp));
  }
  dx.noalias() += dlogits * w.router;
  if (w.shared) {
    const matrix ys = mlp_forward(*w.shared, x, nullptr);
    const vector g = (x * w.shared_gate.transpose()).unaryExpr([](float z) { return sigmoid(z); });
    const matrix dys = dy.array().colwise() * g.array();
    dx += mlp_backward(*w.shared, x, dys, hooks);
    const vector dz = dy.cwiseProduct(ys).rowwise().sum().cwiseProduct(g.cwiseProduct((1.0f - g.array()).matrix()));
    dx.noalias() += dz * w.shared_gate;
  }
  return dx;
}

// ---- attention block ----
struct attention_tape {
  matrix q0, k0;  // projections before q/k norm and rope
  matrix q, k, v; // after norm and rope
  matrix gate;    // the output gate before its sigmoid (forward_config::attention_output_gate); else empty
};
inline attention_tape attention_inputs(const attention_weights& w, const forward_config& c, const rope_table& rope,
                                       const matrix& xn, linear_hooks* hooks) {
  report_input(hooks, {&w.q, &w.k, &w.v}, xn);
  attention_tape t{apply_linear(w.q, xn), apply_linear(w.k, xn), {}, {}, apply_linear(w.v, xn), {}};
  if (c.attention_output_gate) {  // q_proj rows: [q | gate] of each head in turn
    const matrix qg = std::move(t.q0);
    const Eigen::Index hd = c.head_dim;
    t.q0.resize(qg.rows(), c.heads * hd);
    t.gate.resize(qg.rows(), c.heads * hd);
    for (Eigen::Index h = 0; h < c.heads; ++h) {
      t.q0.middleCols(h * hd, hd) = qg.middleCols(2 * h * hd, hd);
      t.gate.middleCols(h * hd, hd) = qg.middleCols(2 * h * hd + hd, hd);
    }
  }
  t.q = t.q0;
  t.k = t.k0;
  if (c.qk_norm) {
    head_rmsnorm_inplace(t.q, w.q_norm, c.head_dim, c.rms_eps);
    head_rmsnorm_inplace(t.k, w.k_norm, c.head_dim, c.rms_eps);
  }
  apply_rope(t.q, rope, c.head_dim, false);
  apply_rope(t.k, rope, c.head_dim, false);
  return t;
}

// The attention half of layer w on h in place: input norm, q/k/v (q/k norm, rope by `rope`),
// attend(tape) -> [rows, heads * head_dim], o_proj, residual. `attend` is the whole-sequence
// causal attention in the forward, and attention over a KV cache in the incremental decoder.
template <class Attend>
inline void attention_block(const layer_weights& w, const forward_config& c, const rope_table& rope, matrix& h,
                            linear_hooks* hooks, Attend&& attend) {
  const matrix xn = rmsnorm(h, w.input_norm, c.rms_eps);
  const attention_tape t = attention_inputs(w.attn, c, rope, xn, hooks);
  matrix a = attend(t);
  if (t.gate.size()) a = a.binaryExpr(t.gate, [](float v, float g) { return v * sigmoid(g); });
  report_input(hooks, {&w.attn.o}, a);
  h.noalias() += apply_linear(w.attn.o, a);
}

// The feed-forward half of layer w on h in place: post-attention norm, MLP or MoE, residual.
// Row by row independent.
inline void feed_forward_block(const layer_weights& w, const forward_config& c, matrix& h, linear_hooks* hooks) {
  const matrix xn = rmsnorm(h, w.post_norm, c.rms_eps);
  if (const auto* d = std::get_if<mlp_weights>(&w.mlp))
    h.noalias() += mlp_forward(*d, xn, hooks);
  else
    h.noalias() += moe_forward(std::get<moe_weights>(w.mlp), c.moe, xn, hooks);
}

// Runs layer w on `h` (rows: whole sequences of rope.cos.rows() tokens) in place.
inline void layer_forward(const layer_weights& w, const forward_config& c, const rope_table& rope, matrix& h,
                          linear_hooks* hooks) {
  const Eigen::Index len = rope.cos.rows();
  if (w.mix == arch::mixer::deltanet)
    deltanet_block(w, c, len, h, hooks);
  else
    attention_block(w, c, rope, h, hooks, [&](const attention_tape& t) { return attention(t.q, t.k, t.v, len, c.head_dim); });
  feed_forward_block(w, c, h, hooks);
}

// Given the feed-forward half's input h2 and dy = d/d(its output), returns d/d(h2), residual included.
inline matrix feed_forward_backward(const layer_weights& w, const forward_config& c, const matrix& h2, const matrix& dy,
                                    linear_hooks* hooks) {
  const matrix xn2 = rmsnorm(h2, w.post_norm, c.rms_eps);
  const matrix dxn2 = std::holds_alternative<mlp_weights>(w.mlp)
                          ? mlp_backward(std::get<mlp_weights>(w.mlp), xn2, dy, hooks)
                          : moe_backward(std::get<moe_weights>(w.mlp), c.moe, xn2, dy, hooks);
  return dy + rmsnorm_backward(h2, w.post_norm, c.rms_eps, dxn2);
}

// Given the layer input h and dy = d/d(layer output), returns d/d(layer input) and reports
// every Linear's output gradient.
inline matrix layer_backward(const layer_weights& w, const forward_config& c, const rope_table& rope,
                             const matrix& h, const matrix& dy, linear_hooks* hooks) {
  const Eigen::Index len = rope.cos.rows();
  if (w.mix == arch::mixer::deltanet) {
    matrix h2 = h;
    deltanet_block(w, c, len, h2, nullptr);
    const matrix dh2 = feed_forward_backward(w, c, h2, dy, hooks);
    return dh2 + deltanet_block_backward(w, c, len, h, dh2, hooks);
  }
  const matrix xn1 = rmsnorm(h, w.input_norm, c.rms_eps);
  const attention_tape t = attention_inputs(w.attn, c, rope, xn1, nullptr);
  const matrix a_raw = attention(t.q, t.k, t.v, len, c.head_dim);
  const matrix sg = t.gate.size() ? matrix(t.gate.unaryExpr([](float g) { return sigmoid(g); })) : matrix();
  const matrix a = t.gate.size() ? matrix(a_raw.cwiseProduct(sg)) : a_raw;
  const matrix h2 = h + apply_linear(w.attn.o, a);
  const matrix dh2 = feed_forward_backward(w, c, h2, dy, hooks);
  report_grad(hooks, w.attn.o, dh2);
  const matrix dag = linear_backward(w.attn.o, dh2);
  const matrix da = t.gate.size() ? matrix(dag.cwiseProduct(sg)) : dag;
  attention_grads g = attention_backward(t.q, t.k, t.v, len, c.head_dim, da);
  apply_rope(g.dq, rope, c.head_dim, true);
  apply_rope(g.dk, rope, c.head_dim, true);
  if (c.qk_norm) {
    g.dq = head_rmsnorm_backward(t.q0, w.attn.q_norm, c.head_dim, c.rms_eps, g.dq);
    g.dk = head_rmsnorm_backward(t.k0, w.attn.k_norm, c.head_dim, c.rms_eps, g.dk);
  }
  if (t.gate.size()) {  // d(q_proj output): [dq | dgate] of each head in turn
    const matrix dgate = dag.cwiseProduct(a_raw).cwiseProduct(sg.cwiseProduct((1.0f - sg.array()).matrix()));
    const Eigen::Index hd = c.head_dim;
    matrix dqg(dgate.rows(), 2 * c.heads * hd);
    for (Eigen::Index hh = 0; hh < c.heads; ++hh) {
      dqg.middleCols(2 * hh * hd, hd) = g.dq.middleCols(hh * hd, hd);
      dqg.middleCols(2 * hh * hd + hd, hd) = dgate.middleCols(hh * hd, hd);
    }
    g.dq = dqg;
  }
  report_grad(hooks, w.attn.q, g.dq);
  report_grad(hooks, w.attn.k, g.dk);
  report_grad(hooks, w.attn.v, g.dv);
  matrix dxn1 = linear_backward(w.attn.q, g.dq);
  dxn1.noalias() += linear_backward(w.attn.k, g.dk);
  dxn1.noalias() += linear_backward(w.attn.v, g.dv);
  return dh2 + rmsnorm_backward(h, w.input_norm, c.rms_eps, dxn1);
}

}  // namespace pq::model::detail
