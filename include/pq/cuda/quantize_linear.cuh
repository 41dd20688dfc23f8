// pq/cuda/quantize_linear.cuh: the device backend of quant::quantize_linear (backend::cuda). The GPTQ paths run
// on the device: the factor (cuSOLVER, fp64), GPTQ or GPTQ + in-loop sweep (pq/cuda/gptq.cuh), the damping
// sweep's held-out errors and the calibration errors of RTN and GPTQ in one cost pass (pq/cuda/cost.cuh). RTN
// itself, the improve-or-keep choice and the rtn/sweep paths are the host's own code (bit-exact by definition;
// the device's RTN and sweep kernels of pq/cuda/kernels.cuh write packed bytes for export and are checked
// against the same host code in tests/cuda). A program calls install_quantize_linear<Formats>() once, from a
// CUDA translation unit that includes this header; quantize_linear(..., backend::cuda) then dispatches here.
#pragma once
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <pq/cuda/cost.cuh>
#include <pq/cuda/gptq.cuh>
#include <pq/cuda/hessian.cuh>
#include <pq/cuda/linalg.cuh>
#include <pq/cuda/memory.cuh>
#include <pq/quant/quantize_linear.hpp>
#include <pq/quant/rtn.hpp>

namespace pq::cuda {

// A Hessian of host statistics on the device: fp64 as stored (the factor's input) and full fp32 (the costs').
struct device_hessian {
  device_buffer<double> lower;
  device_buffer<float> full;
  index_t n = 0, count = 0;
  device_hessian(const linear_stats& st, cudaStream_t s)
      : lower(std::span<const double>(st.H.data(), static_cast<std::size_t>(st.H.size())), s),
        full(static_cast<std::size_t>(st.H.size()), s),
        n(st.cols),
        count(st.count) {
    symmetric_to_float(lower.data(), n, full.data(), s);
  }
};

template <Format F>
linear_result<F> quantize_linear_device(const linear_input& in, const quant_options& opt) {
  const rounding method = per_linear_rounding(opt.method);  // gptq+signround's per-Linear part runs here too
  if (method != rounding::gptq && method != rounding::gptq_sweep)
    return quantize_linear<F>(in, opt, nullptr, backend::host);
  const float tensor_scale = pq::detail::checked_tensor_scale<F>(in);
  const std::vector<float> dampings = pq::detail::damping_grid(opt);
  if (dampings.size() > 1 && !in.heldout)
    throw quant_error(std::string(in.name) + ": the damping sweep needs held-out statistics");
  stream s;
  blas b(s);
  solver sv(s);
  const device_hessian calib(*in.stats, s);
  std::optional<device_hessian> heldout;
  if (dampings.size() > 1) heldout.emplace(*in.heldout, s);
  const device_buffer<float> w(in.weight, s);
  const auto group_sweep = method == rounding::gptq_sweep
                               ? std::optional<sweep_options>(sweep_options{opt.sweep_candidates, opt.sweep_lo, opt.sweep_hi})
                               : std::nullopt;

  linear_result<F> best;
  best.q = quantize_rtn<F>(in.weight, in.rows, in.cols, tensor_scale);
  best.dequantized = dequantize(best.q);
  std::optional<quantized_matrix<F>> gq;
  std::vector<float> gq_deq;
  float chosen = dampings.front();
  double chosen_err = 0.0;
  for (float d : dampings) {
    const device_factor f = factor_on_device(calib.lower.data(), in.cols, d, opt.act_order, in.name, sv, s);
    const gptq_linear l{&f, w.data(), in.rows, tensor_scale};
    gptq_plan<F> plan(std::span<const gptq_linear>(&l, 1), opt.block_size, group_sweep, s);
    plan.run(b, s);
    quantized_matrix<F> q = plan.result(0);
    std::vector<float> deq = dequantize(q);
    if (dampings.size() == 1) {
      gq = std::move(q);
      gq_deq = std::move(deq);
      break;
    }
    const device_buffer<float> dd(std::span<const float>(deq), s);
    const cost_pair p{w.data(), dd.data(), in.rows};
    const double e = output_errors(std::span<const cost_pair>(&p, 1), heldout->full.data(), in.cols, heldout->count,
                                   b, s)[0];
    if (!gq || e < chosen_err) {
      gq = std::move(q);
      gq_deq = std::move(deq);
      chosen = d;
      chosen_err = e;
    }
  }
  // RTN's and GPTQ's calibration errors in one pass.
  const device_buffer<float> d_rtn(std::span<const float>(best.dequantized), s), d_gq(std::span<const float>(gq_deq), s);
  const cost_pair pairs[] = {{w.data(), d_rtn.data(), in.rows}, {w.data(), d_gq.data(), in.rows}};
  const auto errors = output_errors(pairs, calib.full.data(), in.cols, calib.count, b, s);
  best.output_error = best.rtn_output_error = errors[0];
  if (errors[1] < errors[0]) {
    best.q = std::move(*gq);
    best.dequantized = std::move(gq_deq);
    best.output_error = errors[1];
    best.kept = method;
    best.damping = chosen;
  }
  best.predicted_loss = predicted_loss(best.output_error, in.sensitivity);
  return best;
}

// Makes quantize_linear(..., backend::cuda) available for every format of List (a type_list or bundle of
// Format policies). Call once, before any rounding, from a translation unit compiled by nvcc.
template <class List>
void install_quantize_linear() {
  List::for_each([](auto f) {
    using F = typename decltype(f)::type;
    device_quantize_linear<F> = &quantize_linear_device<F>;
  });
}

}  // namespace pq::cuda
