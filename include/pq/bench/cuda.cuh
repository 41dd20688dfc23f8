// pq/bench/cuda.cuh: the CUDA rows of `pq bench`: every kernel of pq/cuda/kernels.cuh per format, timed
// with events (median of repeats after warm-up), against a device-to-device cudaMemcpy of the input's
// size measured in the same run. A program defines pq::bench::run_cuda by calling run_cuda_rows from one
// CUDA translation unit (the driver's tools/pq/bench_cuda.cu).
#pragma once
#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include <pq/bench/bench.hpp>
#include <pq/cuda/kernels.cuh>

namespace pq::bench {

namespace cuda_detail {
// Median milliseconds of `repeats` event-timed runs of fn on s, after two warm-up runs.
template <class Fn>
double median_ms(cudaStream_t s, int repeats, Fn&& fn) {
  fn();
  fn();
  pq::cuda::check(cudaStreamSynchronize(s), "warm-up");
  std::vector<double> t;
  pq::cuda::event a, b;
  for (int i = 0; i < repeats; ++i) {
    a.record(s);
    fn();
    b.record(s);
    b.synchronize();
    t.push_back(b.since(a));
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// Seeded N(0, 0.02) weights, drawn on the host once per run (bf16/fp16 rounded from the float draw).
template <class In>
std::vector<In> random_weights(index_t n) {
  std::vector<In> w(static_cast<std::size_t>(n));
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0.0f, 0.02f);
  // A pattern of 1 Mi draws tiled: drawing 268 M normals would take longer than the whole GPU run.
  const std::size_t period = std::min<std::size_t>(w.size(), std::size_t{1} << 20);
  for (std::size_t i = 0; i < period; ++i) w[i] = from_float<In>(nd(rng));
  for (std::size_t i = period; i < w.size(); ++i) w[i] = w[i - period];
  return w;
}
}  // namespace cuda_detail

inline std::vector<row> run_cuda_rows(options o) {
  namespace pc = pq::cuda;
  if (const std::string why = pc::no_device_reason(); !why.empty()) throw pc::cuda_error(why);
  o = with_defaults(o, device::cuda);
  int dev = 0;
  pc::check(cudaGetDevice(&dev), "cudaGetDevice");
  cudaDeviceProp prop{};
  pc::check(cudaGetDeviceProperties(&prop, dev), "cudaGetDeviceProperties");
  const std::string dev_name = prop.name;
  const std::vector<std::string> formats = selected_formats(o);
  const index_t rows = o.rows, cols = o.cols, n = rows * cols;
  return visit_dtype(o.dtype, [&]<class In>(In) {
    std::vector<row> out;
    pc::stream s;
    const double in_bytes = static_cast<double>(n) * static_cast<double>(sizeof(In));
    const auto host_w = cuda_detail::random_weights<In>(n);
    pc::device_buffer<In> w(std::span<const In>(host_w), s), copy_dst(host_w.size(), s), y(host_w.size(), s);
    const double copy_ms = cuda_detail::median_ms(s, o.repeats, [&] {
      pc::check(cudaMemcpyAsync(copy_dst.data(), w.data(), w.bytes(), cudaMemcpyDeviceToDevice, s), "copy");
    });
    const double copy = 2 * in_bytes / (copy_ms * 1e-3) * 1e-9;
    const std::string dt(dtype_name(o.dtype));
    out.push_back({dev_name, "", "copy", dt, rows, cols, copy_ms * 1e-3, 2 * in_bytes, copy});
    std::vector<double> host_d(static_cast<std::size_t>(cols));
    std::mt19937 rng(2);
    std::uniform_real_distribution<double> u(0.1, 2.0);
    for (auto& x : host_d) x = u(rng);
    pc::device_buffer<double> d(std::span<const double>(host_d), s);
    for (const std::string& name : formats)
      visit_format<packable_formats>(name, [&]<class F>(F) {
        const auto add = [&](std::string kernel, double ms, double bytes) {
          out.push_back({dev_name, std::string(F::name), std::move(kernel), dt, rows, cols, ms * 1e-3, bytes, copy});
        };
        const double packed = packed_bytes<F>(rows, cols);
        pc::device_packed<F> q(rows, cols, s);
        const pc::linear_ref<In> refs[] = {q.quantize_ref(w.data(), d.data())};
        pc::unit_plan<F, In> plan(refs, s);
        add("amax", cuda_detail::median_ms(s, o.repeats, [&] { plan.amax(s); }), in_bytes);
        (void)plan.unit_amax(s, "the benchmark's weights");
        add("quantize+pack", cuda_detail::median_ms(s, o.repeats, [&] { plan.quantize(s); }), in_bytes + packed);
        const pc::dequant_ref<In> drefs[] = {q.dequant_ref_to(y.data())};
        pc::dequantize_plan<F, In> dplan(drefs, s);
        add("dequantize", cuda_detail::median_ms(s, o.repeats, [&] { dplan.run(s); }), packed + in_bytes);
        const sweep_options sopt{o.candidates};
        add("sweep", cuda_detail::median_ms(s, std::max(1, o.repeats / 4), [&] { plan.sweep(sopt, s); }),
            in_bytes + static_cast<double>(cols) * 8 + packed);
        s.synchronize();
      });
    return out;
  });
}

}  // namespace pq::bench
