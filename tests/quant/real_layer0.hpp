// tests/quant/real_layer0.hpp: the real Linears of layer 0 of a tiny checkpoint with real inputs, and the
// geometric-mean output-error ratios of GPTQ, the sweep and both to RTN per format (test and bench share it).
//
// Inputs (the model runtime is not merged yet): the embedding rows of the calibration tokens, RMS-normalised
// (eps 1e-5) and multiplied by the layer's input_layernorm weight for q/k/v, or by its
// post_attention_layernorm weight for gate/up (the attention output is not added). H comes from the first
// `calib_windows` windows of tokens.safetensors:calib, the held-out error from the first `eval_windows` of
// :eval.
#pragma once
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include <pq/formats/bundle.hpp>
#include <pq/quant/quantize_linear.hpp>

#include "mini_safetensors.hpp"

namespace pq::test {

struct layer0 {
  struct linear {
    std::string name;
    std::vector<float> w;
    index_t rows, cols;
    const linear_stats* calib;
    const linear_stats* eval;
  };
  linear_stats attn_calib, attn_eval, mlp_calib, mlp_eval;
  std::vector<linear> linears;

  layer0(const std::string& dir, index_t calib_windows, index_t eval_windows,
         const std::vector<std::string>& projections = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                                        "mlp.gate_proj", "mlp.up_proj"}) {
    constexpr index_t window = 512;
    const mini_safetensors s1(dir + "/model-00001-of-00002.safetensors"),
        s2(dir + "/model-00002-of-00002.safetensors"), tok(dir + "/tokens.safetensors");
    auto tensor = [&](const std::string& n) { return s1.has(n) ? s1.floats(n) : s2.floats(n); };
    auto shape = [&](const std::string& n) { return s1.has(n) ? s1.shape(n) : s2.shape(n); };
    const auto embed = tensor("model.embed_tokens.weight");
    const index_t hidden = shape("model.embed_tokens.weight")[1];
    attn_calib = attn_eval = linear_stats("model.layers.0.input_layernorm (output)", hidden);
    mlp_calib = mlp_eval = linear_stats("model.layers.0.post_attention_layernorm (output)", hidden);
    const auto ln_attn = tensor("model.layers.0.input_layernorm.weight");
    const auto ln_mlp = tensor("model.layers.0.post_attention_layernorm.weight");
    auto accumulate = [&](const std::vector<std::int32_t>& ids, index_t windows, linear_stats& attn, linear_stats& mlp) {
      std::vector<float> xa(static_cast<std::size_t>(window * hidden)), xm(xa.size());
      for (index_t wdw = 0; wdw < windows; ++wdw) {
        for (index_t t = 0; t < window; ++t) {
          const float* e = embed.data() + static_cast<index_t>(ids[static_cast<std::size_t>(wdw * window + t)]) * hidden;
          double ms = 0.0;
          for (index_t j = 0; j < hidden; ++j) ms += static_cast<double>(e[j]) * e[j];
          const float inv = static_cast<float>(1.0 / std::sqrt(ms / static_cast<double>(hidden) + 1e-5));
          for (index_t j = 0; j < hidden; ++j) {
            xa[static_cast<std::size_t>(t * hidden + j)] = e[j] * inv * ln_attn[static_cast<std::size_t>(j)];
            xm[static_cast<std::size_t>(t * hidden + j)] = e[j] * inv * ln_mlp[static_cast<std::size_t>(j)];
          }
        }
        attn.add(xa.data(), window);
        mlp.add(xm.data(), window);
      }
    };
    accumulate(tok.ints("calib"), calib_windows, attn_calib, mlp_calib);
    accumulate(tok.ints("eval"), eval_windows, attn_eval, mlp_eval);
    for (const std::string& p : projections) {
      const std::string n = "model.layers.0." + p + ".weight";
      const bool attn = p.starts_with("self_attn");
      linears.push_back({n, tensor(n), shape(n)[0], shape(n)[1], attn ? &attn_calib : &mlp_calib,
                         attn ? &attn_eval : &mlp_eval});
    }
  }
};

// Geometric means over the Linears of (error / RTN error), [0] on the calibration statistics, [1] held out.
struct ratios {
  double gptq[2] = {}, sweep[2] = {}, gptq_sweep[2] = {}, shipped[2] = {};
};

// The ratios for format F: GPTQ (act-order, damping 0.01, block 128), the scale sweep of RTN (32
// candidates in [0.5, 1.5]), GPTQ with the sweep in its loop, and what quantize_linear ships for gptq_sweep
// (improve-or-keep against RTN on the calibration statistics).
template <Format F>
ratios ratios_to_rtn(const layer0& L, int threads) {
  ratios r;
  const double n = static_cast<double>(L.linears.size());
  quant_options o;
  o.act_order = true;
  o.threads = threads;
  for (const auto& l : L.linears) {
    const cost_hessian hc(*l.calib), he(*l.eval);
    const float g = F::tensor_scale(weight_amax(l.w));
    gptq_factor_cache cache;
    const gptq_factor& f = cache.get(*l.calib, o.damping, o.act_order);
    const auto rtn = quantize_rtn<F>(l.w, l.rows, l.cols, g);
    const auto gq = quantize_gptq<F>(l.w, l.rows, l.cols, g, f, o.block_size, threads);
    const auto both = quantize_gptq<F>(l.w, l.rows, l.cols, g, f, o.block_size, threads, sweep_options{});
    auto sw = rtn;
    scale_sweep<F>(l.w, l.calib->x2_mean(), sw, {}, threads);
    const auto shipped = quantize_linear<F>({l.name, l.w, l.rows, l.cols, l.calib, std::nullopt}, o, &cache);
    for (int h = 0; h < 2; ++h) {
      const cost_hessian& H = h == 0 ? hc : he;
      auto err = [&](const std::vector<float>& deq) { return output_error(l.w, deq, l.rows, l.cols, H, threads); };
      const double base = err(dequantize(rtn));
      if (base == 0.0) continue;  // BF16 of bf16 weights is exact: ratio 1
      r.gptq[h] += std::log(err(dequantize(gq)) / base) / n;
      r.sweep[h] += std::log(err(dequantize(sw)) / base) / n;
      r.gptq_sweep[h] += std::log(err(dequantize(both)) / base) / n;
      r.shipped[h] += std::log(err(shipped.dequantized) / base) / n;
    }
  }
  for (double* v : {r.gptq, r.sweep, r.gptq_sweep, r.shipped})
    for (int h = 0; h < 2; ++h) v[h] = std::exp(v[h]);
  return r;
}

// A markdown table of ratios_to_rtn for every format of Bundle.
template <class Bundle>
std::string ratio_table(const layer0& L, int threads) {
  std::string t = "| format | GPTQ | sweep | GPTQ+sweep | shipped | GPTQ held-out | sweep held-out | GPTQ+sweep held-out "
                  "| shipped held-out |\n|---|---|---|---|---|---|---|---|---|\n";
  Bundle::for_each([&](auto f) {
    using F = typename decltype(f)::type;
    const ratios r = ratios_to_rtn<F>(L, threads);
    char row[256];
    std::snprintf(row, sizeof row, "| %s | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f |\n",
                  std::string(F::name).c_str(), r.gptq[0], r.sweep[0], r.gptq_sweep[0], r.shipped[0], r.gptq[1],
                  r.sweep[1], r.gptq_sweep[1], r.shipped[1]);
    t += row;
  });
  return t;
}

}  // namespace pq::test
