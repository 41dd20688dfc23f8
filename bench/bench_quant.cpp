// bench/bench_quant.cpp: host throughput of RTN, the scale sweep and GPTQ per format and shape, and the
// output-error ratios to RTN on real Linears of tiny-llama-code (the figures of docs/quant.md).
//   bench_quant [--quick] [--models DIR] [--threads N]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include <fmt/core.h>

#include <pq/formats/bundle.hpp>
#include <pq/quant/quantize_linear.hpp>

#include "../tests/quant/real_layer0.hpp"

using pq::index_t;

namespace {
using clock_type = std::chrono::steady_clock;

template <class Fn>
double seconds(Fn&& fn, int repeats) {  // median of repeats
  std::vector<double> t;
  for (int i = 0; i < repeats; ++i) {
    const auto a = clock_type::now();
    fn();
    t.push_back(std::chrono::duration<double>(clock_type::now() - a).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

std::vector<float> random_weights(index_t rows, index_t cols) {
  std::mt19937 rng(1);
  std::normal_distribution<float> n(0.0f, 0.02f);
  std::vector<float> w(static_cast<std::size_t>(rows * cols));
  for (auto& x : w) x = n(rng);
  return w;
}

// Correlated input statistics without a cols³ accumulation: H_ij = ρ^|i−j| scaled per channel.
pq::linear_stats toeplitz_stats(index_t cols) {
  pq::linear_stats s("bench", cols);
  std::vector<double> sc(static_cast<std::size_t>(cols));
  for (index_t j = 0; j < cols; ++j) sc[j] = std::pow(10.0, static_cast<double>((j * 37) % cols) / cols - 0.5);
  for (index_t i = 0; i < cols; ++i)
    for (index_t j = 0; j <= i; ++j) s.H(i, j) = std::pow(0.9, static_cast<double>(i - j)) * sc[i] * sc[j];
  for (index_t j = 0; j < cols; ++j) s.x2_sum[j] = s.H(j, j);
  s.count = 1;
  return s;
}

struct shape {
  index_t rows, cols;
};
}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  int threads = 0;
  // The shared models sit beside the source tree (<src>/../shared/models), as for the tests.
  std::string models = (std::filesystem::path(__FILE__).parent_path() / "../../shared/models").string();
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--quick")) quick = true;
    else if (!std::strcmp(argv[i], "--models") && i + 1 < argc) models = argv[++i];
    else if (!std::strcmp(argv[i], "--threads") && i + 1 < argc) threads = std::stoi(argv[++i]);
    else {
      fmt::print(stderr, "usage: bench_quant [--quick] [--models DIR] [--threads N]\n");
      return 2;
    }
  }
  const int t = pq::resolve_threads(threads, 1 << 20);
  std::vector<shape> shapes = {{1024, 1024}, {4096, 4096}, {14336, 4096}};
  if (quick) shapes.resize(1);
  fmt::print("threads: {}\n\n", t);

  fmt::print("## RTN (G weights/s) and the scale sweep of RTN, 32 candidates (ms)\n\n| format |");
  for (auto s : shapes) fmt::print(" RTN {}x{} | sweep {}x{} |", s.rows, s.cols, s.rows, s.cols);
  fmt::print("\n|---|");
  for (std::size_t i = 0; i < 2 * shapes.size(); ++i) fmt::print("---|");
  fmt::print("\n");
  std::vector<std::vector<float>> weights;
  for (auto s : shapes) weights.push_back(random_weights(s.rows, s.cols));
  pq::roundable_formats::for_each([&](auto f) {  // FP8_SOURCE rounds nothing
    using F = typename decltype(f)::type;
    fmt::print("| {} |", F::name);
    for (std::size_t i = 0; i < shapes.size(); ++i) {
      const auto [rows, cols] = shapes[i];
      const auto& w = weights[i];
      const float g = F::tensor_scale(pq::weight_amax(w));
      pq::quantized_matrix<F> q;
      const double rtn_s = seconds([&] { q = pq::quantize_rtn<F>(w, rows, cols, g); }, quick ? 1 : 3);
      const std::vector<double> d(static_cast<std::size_t>(cols), 1.0);
      const double sweep_s = seconds([&] {
        auto c = q;
        pq::scale_sweep<F>(w, d, c, {}, t);
      }, 1);
      fmt::print(" {:.3f} | {:.0f} |", static_cast<double>(rows * cols) / rtn_s * 1e-9, sweep_s * 1e3);
    }
    fmt::print("\n");
  });

  fmt::print("\n## GPTQ (block 128, act-order; s): factor once per Linear, then per format\n\n");
  fmt::print("| shape | factor | NVFP4 | NVFP4 + sweep | MXFP4 | INT4_G128 | INT4_G128 + sweep | FP8_CHANNEL |\n");
  fmt::print("|---|---|---|---|---|---|---|---|\n");
  for (std::size_t i = 0; i < shapes.size(); ++i) {
    const auto [rows, cols] = shapes[i];
    const auto& w = weights[i];
    const auto stats = toeplitz_stats(cols);
    pq::gptq_factor f;
    const double factor_s = seconds([&] { f = pq::make_gptq_factor(stats, 0.01f, true); }, 1);
    fmt::print("| {}x{} | {:.2f} |", rows, cols, factor_s);
    auto run = [&]<class F>(std::optional<pq::sweep_options> sw) {
      const float g = F::tensor_scale(pq::weight_amax(w));
      fmt::print(" {:.2f} |", seconds([&] { (void)pq::quantize_gptq<F>(w, rows, cols, g, f, 128, t, sw); }, 1));
      std::fflush(stdout);
    };
    run.template operator()<pq::NVFP4>(std::nullopt);
    run.template operator()<pq::NVFP4>(pq::sweep_options{});
    run.template operator()<pq::MXFP4>(std::nullopt);
    run.template operator()<pq::INT4_G128>(std::nullopt);
    run.template operator()<pq::INT4_G128>(pq::sweep_options{});
    run.template operator()<pq::FP8_CHANNEL>(std::nullopt);
    fmt::print("\n");
  }

  const std::string dir = models + "/tiny-llama-code";
  if (!std::filesystem::exists(dir + "/tokens.safetensors")) {
    fmt::print("\n(no {}: skipping the real-model table)\n", dir);
    return 0;
  }
  fmt::print("\n## Output-error ratio to RTN, geometric mean over layer 0 q/k/v/gate/up of tiny-llama-code\n\n");
  const pq::test::layer0 L(dir, quick ? 8 : 64, quick ? 4 : 32);
  fmt::print("{}", pq::test::ratio_table<pq::roundable_formats>(L, t));
  return 0;
}
