// pq/quant/quantize_linear.hpp: the one entry point that rounds a Linear with format F along the configured
// path (RTN, scale sweep, GPTQ, GPTQ + sweep) and returns the exact tensors that ship with their cost. The
// pipeline, the cost table and the export all call it, so what is priced is what is exported.
#pragma once
#include <array>
#include <cmath>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <pq/core/bits.hpp>
#include <pq/formats/format.hpp>
#include <pq/formats/quantized.hpp>
#include <pq/quant/cost.hpp>
#include <pq/quant/error.hpp>
#include <pq/quant/gptq.hpp>
#include <pq/quant/hessian.hpp>
#include <pq/quant/rtn.hpp>
#include <pq/quant/scale_sweep.hpp>

namespace pq {

// Rounding paths; each later one also considers the earlier results it builds on (improve-or-keep).
enum class rounding : std::uint8_t {
  rtn,         // the format's scale rule, round to nearest
  sweep,       // RTN, then the scale sweep
  gptq,        // GPTQ
  gptq_sweep,  // GPTQ whose group scales are swept on the error-updated weights (see quantize_gptq)
  // Block-level paths (pipeline/signround_pass.hpp): per Linear they round as RTN and GPTQ + sweep do, the
  // decoder layer's SignRound training then replaces that rounding where it lowers the block-output error.
  signround,       // SignRound from RTN
  gptq_signround,  // SignRound from GPTQ + sweep's rounding, which stays a candidate
};

// Each rounding's two spellings: as the command line takes it and as report.json states it.
struct rounding_spelling {
  rounding method;
  std::string_view cli, report;
};
inline constexpr std::array<rounding_spelling, 6> rounding_spellings{{
    {rounding::rtn, "rtn", "rtn"},
    {rounding::sweep, "sweep", "sweep"},
    {rounding::gptq, "gptq", "gptq"},
    {rounding::gptq_sweep, "gptq+sweep", "gptq_sweep"},
    {rounding::signround, "signround", "signround"},
    {rounding::gptq_signround, "gptq+signround", "gptq_signround"},
}};

inline std::string_view rounding_name(rounding r) {
  for (const auto& s : rounding_spellings)
    if (s.method == r) return s.report;
  return "?";
}
inline std::string_view rounding_cli_name(rounding r) {
  for (const auto& s : rounding_spellings)
    if (s.method == r) return s.cli;
  return "?";
}
// Whether r is one of SignRound's block-level roundings (they need calibration activations, not only H).
inline constexpr bool is_signround(rounding r) { return r == rounding::signround || r == rounding::gptq_signround; }
// What one Linear is rounded with on its own: a block-level rounding starts from (and, for gptq_signround,
// competes with) a per-Linear one, so the cost table stores that first and the block pass may replace it.
inline constexpr rounding per_linear_rounding(rounding r) {
  return r == rounding::signround ? rounding::rtn : r == rounding::gptq_signround ? rounding::gptq_sweep : r;
}

// The rounding spelled `name` on the command line, or none.
inline std::optional<rounding> parse_rounding(std::string_view name) {
  for (const auto& s : rounding_spellings)
    if (s.cli == name) return s.method;
  return std::nullopt;
}

// Run-wide options, a flat aggregate.
struct quant_options {
  rounding method = rounding::gptq_sweep;
  index_t block_size = 128;    // GPTQ lazy-update block (columns)
  float damping = 0.01f;       // GPTQ: λ = damping · mean(diag H)
  int damping_candidates = 1;  // > 1: that many dampings, log-spaced over [damping/10, damping·10], the one
                               // with the least error on the held-out statistics wins (needs them)
  bool act_order = false;      // GPTQ: process columns by decreasing H_jj (static; no g_idx is exported)
  int sweep_candidates = 32;   // scale sweep: α evenly spaced over [sweep_lo, sweep_hi]
  float sweep_lo = 0.5f;
  float sweep_hi = 1.5f;
  int threads = 0;             // 0: all cores
};

// One Linear to round: y = W x, W row-major [rows, cols].
struct linear_input {
  std::string_view name;                // for error messages
  std::span<const float> weight;
  index_t rows = 0, cols = 0;
  const linear_stats* stats = nullptr;  // calibration statistics of x (required)
  std::optional<float> unit_amax;       // max |w| over the decision unit (fused siblings); none: this Linear
  double sensitivity = 1.0;             // loss per unit of output error, from calibration
  const linear_stats* heldout = nullptr;  // statistics of held-out tokens (for the damping sweep)
};

template <Format F>
struct linear_result {
  quantized_matrix<F> q;           // what ships
  std::vector<float> dequantized;  // dequantize(q), row-major
  double output_error = 0.0;       // tr(ΔW H ΔWᵀ)/n of q on the calibration statistics
  double rtn_output_error = 0.0;   // the same for RTN, the reference every path must match or beat
  double predicted_loss = 0.0;     // sensitivity × output_error
  rounding kept = rounding::rtn;   // the path whose result shipped
  float damping = 0.0f;            // the GPTQ damping used (GPTQ paths)
};

// Where a Linear is rounded. The host is the reference, always available. The device backend is defined by
// pq/cuda/quantize_linear.cuh (pq::cuda_linalg); a program compiles that header in one CUDA translation unit and
// calls pq::cuda::install_quantize_linear<Formats>() once, which fills device_quantize_linear<F> for each of
// them (a user's format included). Without that, asking for backend::cuda is an error naming the format.
enum class backend : std::uint8_t { host, cuda };

inline std::string_view backend_name(backend b) { return b == backend::host ? "host" : "cuda"; }

template <Format F>
using quantize_linear_fn = linear_result<F> (*)(const linear_input&, const quant_options&);
template <Format F>
inline quantize_linear_fn<F> device_quantize_linear = nullptr;

namespace detail {
inline void check_linear(const linear_input& in) {
  const std::string name(in.name);
  if (!in.stats) throw quant_error(name + ": no calibration statistics");
  if (static_cast<index_t>(in.weight.size()) != in.rows * in.cols)
    throw quant_error(name + ": weight has " + std::to_string(in.weight.size()) + " values, expected " +
                      std::to_string(in.rows) + "x" + std::to_string(in.cols));
  for (const linear_stats* s : {in.stats, in.heldout}) {
    if (!s) continue;
    if (s->cols != in.cols)
      throw quant_error(name + ": statistics over " + std::to_string(s->cols) + " input features, weight has " +
                        std::to_string(in.cols));
    if (s->count <= 0) throw quant_error(name + ": statistics hold no tokens");
    if (!s->H.allFinite()) throw quant_error(name + ": non-finite input Hessian");
  }
  for (std::size_t i = 0; i < in.weight.size(); ++i)
    if (!is_finite(in.weight[i]))
      throw quant_error(name + ": non-finite weight at row " + std::to_string(static_cast<index_t>(i) / in.cols) +
                        ", column " + std::to_string(static_cast<index_t>(i) % in.cols));
  if (in.unit_amax && !(is_finite(*in.unit_amax) && *in.unit_amax >= 0.0f))
    throw quant_error(name + ": the decision unit's amax is not a finite non-negative number");
}

// check_linear, the format's shape check, and the Linear's tensor scale (the unit's amax, or its own).
template <Format F>
float checked_tensor_scale(const linear_input& in) {
  check_linear(in);
  if (!accepts<F>(in.rows, in.cols))
    throw quant_error(std::string(in.name) + ": " + std::string(F::name) + " does not accept a " +
                      std::to_string(in.rows) + "x" + std::to_string(in.cols) +
                      " weight (columns must be a multiple of " + std::to_string(F::column_multiple) + ")");
  return F::tensor_scale(in.unit_amax ? *in.unit_amax : weight_amax(in.weight, in.name));
}

inline std::vector<float> damping_grid(const quant_options& o) {
  if (o.damping_candidates <= 1) return {o.damping};
  std::vector<float> d;
  for (int k = 0; k < o.damping_candidates; ++k)
    d.push_back(o.damping * static_cast<float>(std::pow(10.0, -1.0 + 2.0 * k / (o.damping_candidates - 1))));
  return d;
}
}  // namespace detail

// Rounds one Linear with F. Every path starts from RTN and keeps a later result only when its calibration
// output error is strictly lower, so the shipped rounding is never worse than RTN on the calibration data.
// `cache` shares GPTQ factors between the formats of one Linear (pass the same cache for all of them; the
// host backend's). `where` picks the backend (see `backend`); both apply the same improve-or-keep rule.
template <Format F>
linear_result<F> quantize_linear(const linear_input& in, const quant_options& opt, gptq_factor_cache* cache = nullptr,
                                 backend where = backend::host) {
  if (where == backend::cuda) {
    if (!device_quantize_linear<F>)
      throw quant_error(std::string(in.name) + ": the cuda backend was asked for, but this program has no device " +
                        "rounding for " + std::string(F::name) + " (pq::cuda::install_quantize_linear, " +
                        "pq/cuda/quantize_linear.cuh)");
    return device_quantize_linear<F>(in, opt);
  }
  const float tensor_scale = detail::checked_tensor_scale<F>(in);
  const cost_hessian calib(*in.stats);
  auto error_of = [&](const std::vector<float>& deq, const cost_hessian& h) {
    return output_error(in.weight, deq, in.rows, in.cols, h, opt.threads);
  };

  linear_result<F> best;
  best.q = quantize_rtn<F>(in.weight, in.rows, in.cols, tensor_scale);
  best.dequantized = dequantize(best.q);
  best.output_error = best.rtn_output_error = error_of(best.dequantized, calib);
  auto consider = [&](quantized_matrix<F> q, rounding path, float damping) {
    std::vector<float> deq = dequantize(q);
    const double e = error_of(deq, calib);
    if (e < best.output_error) {
      best.q = std::move(q);
      best.dequantized = std::move(deq);
      best.output_error = e;
      best.kept = path;
      best.damping = damping;
    }
  };
  const sweep_options sweep{opt.sweep_candidates, opt.sweep_lo, opt.sweep_hi};
  const std::vector<double> x2 = in.stats->x2_mean();

  const rounding method = per_linear_rounding(opt.method);
  if (method == rounding::sweep) {
    quantized_matrix<F> q = best.q;
    scale_sweep<F>(in.weight, x2, q, sweep, opt.threads);
    consider(std::move(q), rounding::sweep, 0.0f);
  } else if (method == rounding::gptq || method == rounding::gptq_sweep) {
    const std::vector<float> dampings = detail::damping_grid(opt);
    if (dampings.size() > 1 && !in.heldout)
      throw quant_error(std::string(in.name) + ": the damping sweep needs held-out statistics");
    gptq_factor_cache local;
    gptq_factor_cache& factors = cache ? *cache : local;
    std::optional<cost_hessian> heldout;
    if (dampings.size() > 1) heldout.emplace(*in.heldout);
    const auto group_sweep = method == rounding::gptq_sweep ? std::optional<sweep_options>(sweep) : std::nullopt;
    std::optional<quantized_matrix<F>> gq;
    float chosen = dampings.front();
    double chosen_err = 0.0;
    for (float d : dampings) {
      quantized_matrix<F> q = quantize_gptq<F>(in.weight, in.rows, in.cols, tensor_scale,
                                               factors.get(*in.stats, d, opt.act_order), opt.block_size, opt.threads,
                                               group_sweep);
      if (dampings.size() == 1) {
        gq = std::move(q);
        break;
      }
      const double e = error_of(dequantize(q), *heldout);
      if (!gq || e < chosen_err) {
        gq = std::move(q);
        chosen = d;
        chosen_err = e;
      }
    }
    consider(std::move(*gq), method, chosen);
  }
  best.predicted_loss = predicted_loss(best.output_error, in.sensitivity);
  return best;
}

}  // namespace pq
