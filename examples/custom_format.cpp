// A format pq does not ship, written outside pq's headers: a 3-bit normal-float codebook with a BF16
// absmax scale per 64 columns ("NF3_G64"). Modelling the Format concept is all it takes: pq's RTN,
// dequantization, stored-bit accounting and benchmarking apply to it unchanged.
#include <array>
#include <chrono>
#include <random>
#include <vector>

#include <fmt/core.h>

#include <pq/core/bf16.hpp>
#include <pq/formats/bundle.hpp>
#include <pq/formats/quantized.hpp>
#include <pq/quant/rtn.hpp>

#include "nf3_format.hpp"  // the format itself: NF3_G64 (tests/cuda runs it through the device GPTQ)

template <pq::Format F>
void report(const std::vector<float>& w, pq::index_t rows, pq::index_t cols) {
  const auto t0 = std::chrono::steady_clock::now();
  const auto q = pq::quantize_rtn<F>(w, rows, cols);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const auto d = pq::dequantize(q);
  double err = 0, ref = 0;
  for (std::size_t i = 0; i < w.size(); ++i) {
    err += double(w[i] - d[i]) * (w[i] - d[i]);
    ref += double(w[i]) * w[i];
  }
  const auto packed = pq::pack(q, 1.0f);
  const auto back = pq::dequantize(pq::unpack<F>(packed, rows, cols));
  fmt::print("{:<10} {:>7.4f} bits/w  relative MSE {:.3e}  RTN {:6.1f} M weights/s  pack round trip {}\n", F::name,
             pq::bits_per_weight<F>(rows, cols), err / ref, double(w.size()) / s / 1e6, back == d ? "exact" : "BROKEN");
}

int main() {
  const pq::index_t rows = 1024, cols = 1024;
  std::mt19937 rng(0);
  std::normal_distribution<float> nd(0.0f, 0.02f);
  std::vector<float> w(rows * cols);
  for (auto& x : w) x = nd(rng);
  report<NF3_G64>(w, rows, cols);
  report<pq::MXFP4>(w, rows, cols);
  report<pq::NVFP4>(w, rows, cols);
  report<pq::INT4_G128>(w, rows, cols);
}
