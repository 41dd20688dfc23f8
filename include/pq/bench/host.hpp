// pq/bench/host.hpp: the CPU rows of `pq bench`: the packing path's host loops (the same building blocks
// the kernels run), on all cores, against a streaming copy of the same number of bytes; plus the
// pipeline's own quantize_rtn (fp32 in, one thread), the figure docs/quant.md tracks.
#pragma once
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <pq/bench/bench.hpp>
#include <pq/core/parallel.hpp>
#include <pq/quant/rtn.hpp>

namespace pq::bench {

namespace detail {
// Seeded weights N(0, 0.02) in the requested dtype (bf16 and fp16 rounded from the float draw).
template <class In>
std::vector<In> random_weights(index_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 0.02f);
  std::vector<In> w(static_cast<std::size_t>(n));
  for (auto& x : w) x = from_float<In>(nd(rng));
  return w;
}

// Streaming copy of `bytes` (at least 256 MiB, beyond any CPU cache) on `threads` threads: GB/s counting
// bytes read plus written.
inline double copy_gbps(std::size_t bytes, int threads, int repeats) {
  bytes = std::max<std::size_t>(bytes, std::size_t{256} << 20);
  std::vector<std::byte> a(bytes, std::byte{1}), b(bytes);
  const int t = resolve_threads(threads, 1 << 20);
  const double s = median_seconds(repeats, [&] {
    parallel_rows(t, t, [&](index_t i0, index_t i1) {
      for (index_t i = i0; i < i1; ++i) {
        const std::size_t lo = bytes * static_cast<std::size_t>(i) / static_cast<std::size_t>(t);
        const std::size_t hi = bytes * static_cast<std::size_t>(i + 1) / static_cast<std::size_t>(t);
        std::memcpy(b.data() + lo, a.data() + lo, hi - lo);
      }
    });
  });
  return 2.0 * static_cast<double>(bytes) / s * 1e-9;
}
}  // namespace detail

inline std::vector<row> run_cpu(options o) {
  o = with_defaults(o, device::cpu);
  const int threads = resolve_threads(o.threads, o.rows);
  const std::string dev = "cpu (" + std::to_string(threads) + (threads == 1 ? " thread)" : " threads)");
  const std::vector<std::string> formats = selected_formats(o);
  const index_t rows = o.rows, cols = o.cols, n = rows * cols;
  return visit_dtype(o.dtype, [&]<class In>(In) {
    std::vector<row> out;
    const double in_bytes = static_cast<double>(n) * static_cast<double>(sizeof(In));
    const double copy = detail::copy_gbps(static_cast<std::size_t>(in_bytes), threads, o.repeats);
    out.push_back({dev, "", "copy", std::string(dtype_name(o.dtype)), rows, cols, in_bytes * 2 / (copy * 1e9),
                   in_bytes * 2, copy});
    const auto w = detail::random_weights<In>(n, 1);
    std::vector<double> d(static_cast<std::size_t>(cols));
    std::mt19937 rng(2);
    std::uniform_real_distribution<double> u(0.1, 2.0);
    for (auto& x : d) x = u(rng);
    std::vector<float> wf(w.size());
    for (std::size_t i = 0; i < w.size(); ++i) wf[i] = to_float(w[i]);
    std::vector<In> y(w.size());
    const sweep_options sopt{o.candidates};
    for (const std::string& name : formats)
      visit_format<packable_formats>(name, [&]<class F>(F) {
        const auto add = [&](std::string kernel, double seconds, double bytes) {
          out.push_back({dev, std::string(F::name), std::move(kernel), std::string(dtype_name(o.dtype)), rows, cols,
                         seconds, bytes, copy});
        };
        const double packed = packed_bytes<F>(rows, cols);
        const std::span<const In> parts[] = {w};
        float amax = 0.0f;
        add("amax", median_seconds(o.repeats, [&] { amax = unit_amax<In>(parts); }), in_bytes);
        const float ts = F::tensor_scale(amax);
        auto buf = make_packed_buffers<F>(rows, cols);
        add("quantize+pack", median_seconds(o.repeats, [&] {
              std::fill(buf.zeros.begin(), buf.zeros.end(), 0u);
              quantize_pack_host<F>(w.data(), rows, cols, ts, buf, threads);
            }),
            in_bytes + packed);
        add("dequantize", median_seconds(o.repeats, [&] { dequantize_host<F>(buf, ts, y.data(), threads); }),
            packed + in_bytes);
        add("sweep", median_seconds(1, [&] {
              std::fill(buf.zeros.begin(), buf.zeros.end(), 0u);
              sweep_pack_host<F>(w.data(), d.data(), rows, cols, ts, sopt, buf, threads);
            }),
            in_bytes + static_cast<double>(cols) * 8 + packed);
        add("rtn (1 thread)", median_seconds(1, [&] { (void)quantize_rtn<F>(wf, rows, cols, ts); }),
            static_cast<double>(n) * 4 + packed);
      });
    return out;
  });
}

}  // namespace pq::bench
