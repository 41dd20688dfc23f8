// pq/bench/gptq.cuh: the device measurements behind `pq bench --algo gptq` (rows and printing in
// pq/bench/gptq.hpp). Activations and weights are drawn on the device (counter-based normals; activation
// channels scaled over two decades), H = XᵀX is accumulated there by SYRK; the host path, where measured, gets
// the same H (widened to fp64) and weights. A program defines pq::bench::run_gptq_cuda by calling
// run_gptq_rows from one CUDA translation unit.
#pragma once
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <pq/bench/gptq.hpp>
#include <pq/cuda/cost.cuh>
#include <pq/cuda/gptq.cuh>
#include <pq/cuda/hessian.cuh>
#include <pq/cuda/linalg.cuh>
#include <pq/formats/bundle.hpp>
#include <pq/quant/cost.hpp>
#include <pq/quant/gptq.hpp>

namespace pq::bench {

// The formats `pq bench --algo gptq` can measure (each one instantiates the device GPTQ; tests/cuda covers all).
using gptq_bench_formats = bundle<NVFP4, MXFP4, MXFP8_E4M3, INT4_G128, FP8_CHANNEL>;

namespace gptq_detail {
__device__ inline std::uint64_t mix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
// x[e] = sigma · N(0, 1) · (column_scales ? 10^(2·((j·37) mod cols)/cols − 1) : 1), j = e mod cols.
__global__ void normal_kernel(float* x, index_t count, index_t cols, std::uint64_t seed, float sigma,
                              bool column_scales) {
  const index_t e = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x;
  if (e >= count) return;
  const std::uint64_t a = mix64(seed ^ (2 * static_cast<std::uint64_t>(e))), b = mix64(a ^ 0x5bd1e995ull);
  const float u1 = (static_cast<float>(a >> 40) + 1.0f) * 0x1p-24f, u2 = static_cast<float>(b >> 40) * 0x1p-24f;
  float z = sqrtf(-2.0f * logf(u1)) * cospif(2.0f * u2) * sigma;
  if (column_scales) {
    const index_t j = e % cols;
    z *= exp10f(2.0f * static_cast<float>((j * 37) % cols) / static_cast<float>(cols) - 1.0f);
  }
  x[e] = z;
}
__global__ void widen_kernel(const float* a, index_t count, double* b) {
  const index_t e = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x;
  if (e < count) b[e] = a[e];
}
inline void fill_normal(float* x, index_t count, index_t cols, std::uint64_t seed, float sigma, bool column_scales,
                        cudaStream_t s) {
  normal_kernel<<<cuda::detail::grid_of(cuda::detail::ceil_div(count, 256), "normal"), 256, 0, s>>>(
      x, count, cols, seed, sigma, column_scales);
  cuda::detail::launch_check("normal_kernel launch");
}

template <class Fn>
double wall_ms(cudaStream_t s, Fn&& fn) {
  cuda::check(cudaStreamSynchronize(s), "cudaStreamSynchronize");
  const auto a = std::chrono::steady_clock::now();
  fn();
  cuda::check(cudaStreamSynchronize(s), "cudaStreamSynchronize");
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - a).count();
}
// Median of `repeats` runs after one warm-up.
template <class Fn>
double median_wall_ms(cudaStream_t s, int repeats, Fn&& fn) {
  (void)wall_ms(s, fn);
  std::vector<double> t;
  for (int i = 0; i < std::max(1, repeats); ++i) t.push_back(wall_ms(s, fn));
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}
template <class Fn>
double host_ms(Fn&& fn) {
  const auto a = std::chrono::steady_clock::now();
  fn();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - a).count();
}
inline std::string fmt(const char* f, double a, double b = 0, double c = 0) {
  char buf[256];
  std::snprintf(buf, sizeof buf, f, a, b, c);
  return buf;
}

// One Hessian on the device from `tokens` drawn activations: fp32 lower (SYRK) and fp64 lower (the factor's).
struct bench_hessian {
  cuda::device_stats stats;
  cuda::device_buffer<double> lower;
  bench_hessian(index_t cols, index_t tokens, std::uint64_t seed, const cuda::blas& b, cudaStream_t s)
      : stats(cols, s), lower(static_cast<std::size_t>(cols * cols), s) {
    cuda::device_buffer<float> x(static_cast<std::size_t>(tokens * cols), s);
    fill_normal(x.data(), tokens * cols, cols, seed, 1.0f, true, s);
    stats.add(x.data(), tokens, b, s);
    widen_kernel<<<cuda::detail::grid_of(cuda::detail::ceil_div(cols * cols, 256), "widen"), 256, 0, s>>>(
        stats.hessian_lower(), cols * cols, lower.data());
    cuda::detail::launch_check("widen_kernel launch");
  }
};
}  // namespace gptq_detail

inline std::vector<gptq_row> run_gptq_rows(const gptq_options& o) {
  namespace pc = pq::cuda;
  namespace gd = gptq_detail;
  if (const std::string why = pc::no_device_reason(); !why.empty()) throw pc::cuda_error(why);
  int dev = 0;
  pc::check(cudaGetDevice(&dev), "cudaGetDevice");
  cudaDeviceProp prop{};
  pc::check(cudaGetDeviceProperties(&prop, dev), "cudaGetDeviceProperties");
  const std::string dn = prop.name;
  for (const auto& f : o.formats) visit_format<gptq_bench_formats>(f, [](auto) {});  // unknown names fail first
  std::vector<gptq_row> out;
  pc::stream s;
  pc::blas b(s);
  pc::solver sv(s);
  constexpr float damping = 0.01f;

  // ---- H = XᵀX, 2048 tokens x 4096: SYRK against a full SGEMM of the same product, and the host's fp64 ----
  {
    const index_t K = 4096, T = 2048;
    pc::device_buffer<float> x(static_cast<std::size_t>(T * K), s), c(static_cast<std::size_t>(K * K), s);
    gd::fill_normal(x.data(), T * K, K, 11, 1.0f, true, s);
    pc::device_stats st(K, s);
    const double syrk = gd::median_wall_ms(s, o.repeats + 2, [&] { st.add(x.data(), T, b, s); });
    const double gemm = gd::median_wall_ms(s, o.repeats + 2, [&] {
      pc::gemm_row_major(b, K, K, T, 1.0f, x.data(), K, true, x.data(), K, false, 0.0f, c.data(), K);
    });
    const double full_flops = 2.0 * static_cast<double>(K) * K * T;
    gptq_row r{dn, "H = X^T X (fp32 syrk)", "", "2048 tok x 4096", syrk, 0, ""};
    r.note = gd::fmt("%.1f TFLOP/s counting the full product; sgemm of the same %.1f TFLOP/s (%.0f%%)",
                     full_flops / syrk * 1e-9, full_flops / gemm * 1e-9, 100.0 * gemm / syrk);
    if (o.host) {
      pc::device_stats once(K, s);
      once.add(x.data(), T, b, s);
      const linear_stats got = once.download("bench");
      const auto hx = x.download();
      linear_stats host("bench", K);
      r.host_ms = gd::host_ms([&] { host.add(hx.data(), T); });
      const double rel = (got.hessian() - host.hessian()).norm() / host.hessian().norm();
      r.note += gd::fmt("; rel. Frobenius error vs host fp64 %.2e", rel);
    }
    out.push_back(r);
    out.push_back({dn, "sgemm X^T X (reference)", "", "2048 tok x 4096", gemm, 0, ""});
  }

  // ---- single Linears: factor, GPTQ (Cholesky included, H given), GPTQ + sweep; host on the first format ----
  struct shape {
    index_t rows, cols;
  };
  for (const shape sh : {shape{4096, 4096}, shape{14336, 4096}, shape{4096, 14336}}) {
    const std::string label = std::to_string(sh.rows) + "x" + std::to_string(sh.cols);
    const gd::bench_hessian H(sh.cols, 2 * sh.cols, 100 + static_cast<std::uint64_t>(sh.cols), b, s);
    pc::device_buffer<float> w(static_cast<std::size_t>(sh.rows * sh.cols), s);
    gd::fill_normal(w.data(), sh.rows * sh.cols, sh.cols, 7, 0.02f, false, s);
    const double fms = gd::median_wall_ms(s, o.repeats, [&] {
      (void)pc::factor_on_device(H.lower.data(), sh.cols, damping, true, "bench", sv, s);
    });
    out.push_back({dn, "factor (fp64 potrf+trtri)", "", label, fms, 0, ""});
    std::optional<linear_stats> hs;
    std::optional<gptq_factor> hf;
    std::vector<float> hw;
    for (std::size_t fi = 0; fi < o.formats.size(); ++fi)
      visit_format<gptq_bench_formats>(o.formats[fi], [&]<class F>(F) {
        const float g = F::tensor_scale(1.0f);
        for (bool sweep : {false, true}) {
          const auto opt = sweep ? std::optional<sweep_options>(sweep_options{}) : std::nullopt;
          std::optional<pc::device_factor> f;
          std::optional<pc::gptq_plan<F>> plan;
          pc::gptq_linear l;
          const double ms = gd::median_wall_ms(s, o.repeats, [&] {  // the codes stay on the device
            plan.reset();
            f.emplace(pc::factor_on_device(H.lower.data(), sh.cols, damping, true, "bench", sv, s));
            l = {&*f, w.data(), sh.rows, g};
            plan.emplace(std::span<const pc::gptq_linear>(&l, 1), 128, opt, s);
            plan->run(b, s);
          });
          const std::optional<quantized_matrix<F>> q = plan->result(0);
          gptq_row r{dn, sweep ? "gptq+sweep (act-order)" : "gptq (act-order)", std::string(F::name), label, ms, 0,
                     "factor included"};
          // The host's fp64 LLT is single-threaded Eigen (~100 s at K = 14336): measured up to K = 4096.
          if (o.host && fi == 0 && !sweep && sh.cols <= 4096) {
            if (!hs) {
              hs.emplace(H.stats.download("bench"));
              hw = w.download();
            }
            const double t = gd::host_ms([&] {
              hf.emplace(make_gptq_factor(*hs, damping, true, o.threads));
              const auto ref = quantize_gptq<F>(hw, sh.rows, sh.cols, g, *hf, 128, o.threads, opt);
              std::size_t same = 0;
              for (std::size_t i = 0; i < ref.codes.size(); ++i) same += ref.codes[i] == q->codes[i];
              r.note = gd::fmt("codes equal %.5f", static_cast<double>(same) / static_cast<double>(ref.codes.size()));
              const cost_hessian ch(*hs);
              const double eh = output_error(hw, dequantize(ref), sh.rows, sh.cols, ch, o.threads);
              const double ed = output_error(hw, dequantize(*q), sh.rows, sh.cols, ch, o.threads);
              r.note += gd::fmt(", error device/host %.5f", ed / eh);
            });
            r.host_ms = t;  // includes the agreement check's two cost evaluations (a few % of it)
          }
          out.push_back(r);
        }
      });
  }

  // ---- the experts of an MoE layer: each its own H; batched plan vs the single-Linear path looped ----
  if (o.experts > 0) {
    const int E = o.experts;
    const index_t rows = 768, K = 2048;
    std::vector<std::unique_ptr<gd::bench_hessian>> hs;
    for (int e = 0; e < E; ++e) hs.push_back(std::make_unique<gd::bench_hessian>(K, 2 * K, 1000 + e, b, s));
    pc::device_buffer<float> w(static_cast<std::size_t>(E * rows * K), s);
    gd::fill_normal(w.data(), E * rows * K, K, 8, 0.02f, false, s);
    const std::string label = std::to_string(E) + " x 768x2048";
    visit_format<gptq_bench_formats>(o.formats.front(), [&]<class F>(F) {
      const float g = F::tensor_scale(1.0f);
      std::vector<pc::device_factor> fs;
      const double batched = gd::median_wall_ms(s, std::min(o.repeats, 2), [&] {
        fs.clear();
        for (int e = 0; e < E; ++e) fs.push_back(pc::factor_on_device(hs[e]->lower.data(), K, damping, true, "e", sv, s));
        std::vector<pc::gptq_linear> ls;
        for (int e = 0; e < E; ++e) ls.push_back({&fs[e], w.data() + e * rows * K, rows, g});
        pc::gptq_plan<F> plan(ls, 128, std::nullopt, s);
        plan.run(b, s);
      });
      std::vector<pc::gptq_linear> ls;
      for (int e = 0; e < E; ++e) ls.push_back({&fs[e], w.data() + e * rows * K, rows, g});
      const double rounding = gd::median_wall_ms(s, o.repeats, [&] {
        pc::gptq_plan<F> plan(ls, 128, std::nullopt, s);
        plan.run(b, s);
      });
      const double looped = gd::median_wall_ms(s, 1, [&] {
        for (int e = 0; e < E; ++e) {
          const pc::device_factor f = pc::factor_on_device(hs[e]->lower.data(), K, damping, true, "e", sv, s);
          const pc::gptq_linear l{&f, w.data() + e * rows * K, rows, g};
          pc::gptq_plan<F> plan(std::span<const pc::gptq_linear>(&l, 1), 128, std::nullopt, s);
          plan.run(b, s);
        }
      });
      gptq_row r{dn, "gptq experts batched", std::string(F::name), label, batched, 0,
                 gd::fmt("looped single-Linear path %.1f ms (%.1fx); batched rounding alone %.1f ms", looped,
                         looped / batched, rounding)};
      if (o.host) {  // the host on 4 experts, scaled to all of them
        const int he = std::min(E, 4);
        const auto hw = w.download();
        double t = 0;
        for (int e = 0; e < he; ++e) {
          const linear_stats st = hs[e]->stats.download("e");
          t += gd::host_ms([&] {
            const auto f = make_gptq_factor(st, damping, true, o.threads);
            (void)quantize_gptq<F>(std::span<const float>(hw).subspan(static_cast<std::size_t>(e * rows * K),
                                                                      static_cast<std::size_t>(rows * K)),
                                   rows, K, g, f, 128, o.threads);
          });
        }
        r.host_ms = t * E / he;
        r.note += gd::fmt("; host measured on %.0f experts, scaled", he);
      }
      out.push_back(r);
      out.push_back({dn, "gptq experts looped", std::string(F::name), label, looped, 0, "single-Linear path, one by one"});
    });
  }

  // ---- costs: 16 (Linear, format) pairs of 4096x4096 against one H in one pass ----
  {
    const index_t rows = 4096, K = 4096, P = 16;
    const gd::bench_hessian H(K, 2 * K, 5, b, s);
    pc::device_buffer<float> full(static_cast<std::size_t>(K * K), s), w(static_cast<std::size_t>(rows * K), s),
        wh(static_cast<std::size_t>(P * rows * K), s);
    pc::symmetric_to_float(H.stats.hessian_lower(), K, full.data(), s);
    gd::fill_normal(w.data(), rows * K, K, 9, 0.02f, false, s);
    gd::fill_normal(wh.data(), P * rows * K, K, 10, 0.02f, false, s);
    std::vector<pc::cost_pair> pairs;
    for (index_t p = 0; p < P; ++p) pairs.push_back({w.data(), wh.data() + p * rows * K, rows});
    const double ms = gd::median_wall_ms(s, o.repeats, [&] {
      (void)pc::output_errors(pairs, full.data(), K, H.stats.count(), b, s);
    });
    gptq_row r{dn, "costs tr(dW H dW^T)", "", "16 x 4096x4096", ms, 0, "one pass, shared H"};
    if (o.host) {
      const auto hw = w.download(), hwh = wh.download();
      const cost_hessian ch(H.stats.download("bench"));
      const double one = gd::host_ms([&] {
        (void)output_error(hw, std::span<const float>(hwh).first(static_cast<std::size_t>(rows * K)), rows, K, ch,
                           o.threads);
      });
      r.host_ms = one * static_cast<double>(P);
      r.note += "; host: one pair timed, x16";
    }
    out.push_back(r);
  }
  return out;
}

}  // namespace pq::bench
