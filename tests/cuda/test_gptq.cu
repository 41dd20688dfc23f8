// GPTQ, statistics and costs on the device (pq/cuda/gptq.cuh, hessian.cuh, cost.cuh, quantize_linear.cuh)
// against the host's fp64 reference: the factor, the codes (>= 99.9% equal: fp32 vs fp64 ties) and the output
// error tr(ΔW H ΔWᵀ) (within 0.5%) for every format and a user's own, batched experts and stacked siblings,
// real layers of ../shared/models, H = XᵀX by SYRK (relative Frobenius error), the one-pass costs, and
// quantize_linear's cuda backend. main.cu skips the suite without a GPU.
#include <doctest/doctest.h>

#include <array>
#include <cmath>
#include <filesystem>
#include <tuple>
#include <vector>

#include <pq/cuda/cost.cuh>
#include <pq/cuda/gptq.cuh>
#include <pq/cuda/hessian.cuh>
#include <pq/cuda/linalg.cuh>
#include <pq/cuda/quantize_linear.cuh>
#include <pq/formats/bundle.hpp>
#include <pq/quant/cost.hpp>
#include <pq/quant/gptq.hpp>

#include "../../examples/nf3_format.hpp"
#include "../quant/real_layer0.hpp"
#include "../quant/synthetic.hpp"

using namespace pq;
namespace pqc = pq::cuda;

// The custom format of examples/ (a 3-bit normal-float codebook, BF16 absmax per 64 columns), as a user wrote it.
using NF3_G64_test = NF3_G64;

namespace {

using device_gptq_formats = decltype(std::tuple_cat(std::declval<test::as_tuple<roundable_formats>::type>(),
                                                    std::declval<std::tuple<NF3_G64_test>>()));

linear_stats gptq_test_stats(index_t cols, index_t tokens, unsigned seed, bool dead) {
  linear_stats s("test.linear", cols);
  auto x = test::correlated_activations(tokens, cols, seed);
  if (dead)
    for (index_t t = 0; t < tokens; ++t) x[static_cast<std::size_t>(t * cols + 5)] = 0.0f;
  s.add(x.data(), tokens);
  return s;
}

template <class F>
double code_agreement(const quantized_matrix<F>& a, const quantized_matrix<F>& b) {
  std::size_t same = 0;
  for (std::size_t i = 0; i < a.codes.size(); ++i) same += a.codes[i] == b.codes[i];
  return static_cast<double>(same) / static_cast<double>(a.codes.size());
}

// Device GPTQ of one Linear and the host's, compared: codes and output error.
template <class F>
void check_against_host(const std::vector<float>& w, index_t rows, index_t cols, const linear_stats& st, bool act,
                        bool sweep, index_t block) {
  pqc::stream s;
  pqc::blas b(s);
  pqc::solver sv(s);
  const float g = F::tensor_scale(weight_amax(w));
  const auto opt = sweep ? std::optional<sweep_options>(sweep_options{}) : std::nullopt;
  const auto hf = make_gptq_factor(st, 0.01f, act);
  const auto ref = quantize_gptq<F>(w, rows, cols, g, hf, block, 0, opt);
  const pqc::device_factor df = pqc::factor_on_device(st, 0.01f, act, sv, s);
  CHECK(df.order == hf.order);
  const pqc::device_buffer<float> dw(std::span<const float>(w), s);
  const pqc::gptq_linear l{&df, dw.data(), rows, g};
  pqc::gptq_plan<F> plan(std::span<const pqc::gptq_linear>(&l, 1), block, opt, s);
  plan.run(b, s);
  const auto got = plan.result(0);
  const double agree = code_agreement(ref, got);
  const cost_hessian h(st);
  const double e_ref = output_error(w, dequantize(ref), rows, cols, h);
  const double e_got = output_error(w, dequantize(got), rows, cols, h);
  MESSAGE(F::name << " act " << act << " sweep " << sweep << ": codes equal " << agree << ", error " << e_got << " vs "
                  << e_ref);
  CHECK(agree >= 0.999);
  CHECK(std::abs(e_got - e_ref) <= 0.005 * e_ref + 1e-30);
}
}  // namespace

TEST_CASE("the device factor is the host's: same order, U within fp32 of the fp64 factor") {
  for (bool act : {false, true}) {
    CAPTURE(act);
    const auto st = gptq_test_stats(384, 1024, 3, true);
    pqc::stream s;
    pqc::solver sv(s);
    const auto hf = make_gptq_factor(st, 0.01f, act);
    const auto df = pqc::factor_on_device(st, 0.01f, act, sv, s);
    CHECK(df.order == hf.order);
    const auto u = df.U.download();
    double diff = 0.0, norm = 0.0;
    for (index_t i = 0; i < st.cols; ++i)
      for (index_t j = 0; j < st.cols; ++j) {
        const double a = u[static_cast<std::size_t>(i * st.cols + j)], r = hf.U(i, j);
        diff += (a - r) * (a - r);
        norm += r * r;
      }
    MESSAGE("relative Frobenius difference of U: " << std::sqrt(diff / norm));
    CHECK(std::sqrt(diff / norm) < 1e-5);
  }
}

TEST_CASE("an indefinite Hessian on the device is an error naming the Linear") {
  linear_stats st("model.layers.2.mlp.down_proj", 4);
  st.H.setIdentity();
  st.H(1, 0) = 10.0;
  st.count = 1;
  pqc::stream s;
  pqc::solver sv(s);
  CHECK_THROWS_WITH_AS(pqc::factor_on_device(st, 0.01f, false, sv, s), doctest::Contains("down_proj"), quant_error);
}

TEST_CASE_TEMPLATE_DEFINE("device GPTQ matches the host's on random data", F, device_gptq_random) {
  constexpr index_t rows = 80, cols = 512;
  const auto w = test::weights(rows, cols, 7);
  for (bool dead : {false, true}) {
    const auto st = gptq_test_stats(cols, 1536, 9, dead);
    for (bool act : {false, true})
      for (bool sweep : {false, true}) {
        CAPTURE(dead);
        check_against_host<F>(w, rows, cols, st, act, sweep, 128);
      }
  }
  const auto st = gptq_test_stats(cols, 1536, 10, false);
  check_against_host<F>(w, rows, cols, st, true, false, 48);  // a block that does not divide K
}
TEST_CASE_TEMPLATE_APPLY(device_gptq_random, device_gptq_formats);

TEST_CASE_TEMPLATE("device GPTQ on real layers of tiny-llama-code", F, NVFP4, MXFP4, INT4_G128, FP8_CHANNEL) {
  const std::string dir = std::string(PQ_MODELS_DIR) + "/tiny-llama-code";
  if (!std::filesystem::exists(dir + "/tokens.safetensors")) {
    MESSAGE("skipped: " << dir << " is absent");
    return;
  }
  const test::layer0 L(dir, 8, 1);
  for (const auto& l : L.linears) {
    CAPTURE(l.name);
    check_against_host<F>(l.w, l.rows, l.cols, *l.calib, true, true, 128);
  }
}

TEST_CASE_TEMPLATE("batched device GPTQ: experts with their own Hessians, siblings sharing one", F, NVFP4, INT4_G128,
                   FP8_CHANNEL) {
  constexpr index_t cols = 256;
  pqc::stream s;
  pqc::blas b(s);
  pqc::solver sv(s);
  SUBCASE("experts of equal height (batched SGEMM)") {
    constexpr int experts = 6;
    constexpr index_t rows = 40;
    std::vector<linear_stats> st;
    std::vector<std::vector<float>> w;
    std::vector<pqc::device_factor> df;
    std::vector<pqc::device_buffer<float>> dw;
    for (int e = 0; e < experts; ++e) {
      st.push_back(gptq_test_stats(cols, 512, 100 + e, e == 2));
      w.push_back(test::weights(rows, cols, 200 + e));
    }
    std::vector<float> all;
    for (const auto& x : w) all.insert(all.end(), x.begin(), x.end());
    const float g = F::tensor_scale(weight_amax(all));
    std::vector<pqc::gptq_linear> ls;
    for (int e = 0; e < experts; ++e) {
      df.push_back(pqc::factor_on_device(st[e], 0.01f, true, sv, s));
      dw.emplace_back(std::span<const float>(w[e]), s);
    }
    for (int e = 0; e < experts; ++e) ls.push_back({&df[e], dw[e].data(), rows, g});
    pqc::gptq_plan<F> plan(ls, 64, sweep_options{}, s);
    plan.run(b, s);
    for (int e = 0; e < experts; ++e) {
      CAPTURE(e);
      const auto ref = quantize_gptq<F>(w[e], rows, cols, g, make_gptq_factor(st[e], 0.01f, true), 64, 0, sweep_options{});
      CHECK(code_agreement(ref, plan.result(e)) >= 0.999);
    }
  }
  SUBCASE("siblings of different heights sharing one factor (q/k/v)") {
    const auto st = gptq_test_stats(cols, 512, 300, false);
    const std::vector<index_t> rows{64, 16, 16};
    std::vector<std::vector<float>> w;
    std::vector<pqc::device_buffer<float>> dw;
    for (std::size_t i = 0; i < rows.size(); ++i) {
      w.push_back(test::weights(rows[i], cols, 400 + static_cast<unsigned>(i)));
      dw.emplace_back(std::span<const float>(w.back()), s);
    }
    const float g = F::tensor_scale(weight_amax(w[0]));
    const auto df = pqc::factor_on_device(st, 0.01f, false, sv, s);
    std::vector<pqc::gptq_linear> ls;
    for (std::size_t i = 0; i < rows.size(); ++i) ls.push_back({&df, dw[i].data(), rows[i], g});
    pqc::gptq_plan<F> plan(ls, 128, std::nullopt, s);
    plan.run(b, s);
    const auto hf = make_gptq_factor(st, 0.01f, false);
    for (std::size_t i = 0; i < rows.size(); ++i) {
      CAPTURE(i);
      CHECK(code_agreement(quantize_gptq<F>(w[i], rows[i], cols, g, hf, 128, 0), plan.result(i)) >= 0.999);
    }
  }
}

TEST_CASE("device statistics: H by fp32 SYRK against the host's fp64 H, E[x²] and amax") {
  constexpr index_t cols = 320, tokens = 2048;
  const auto x = test::correlated_activations(tokens, cols, 77);
  linear_stats host("stats", cols);
  host.add(x.data(), 1000);
  host.add(x.data() + 1000 * cols, tokens - 1000);
  pqc::stream s;
  pqc::blas b(s);
  pqc::device_stats dev(cols, s);
  const pqc::device_buffer<float> dx(std::span<const float>(x), s);
  dev.add(dx.data(), 1000, b, s);
  dev.add(dx.data() + 1000 * cols, tokens - 1000, b, s);
  const linear_stats got = dev.download("stats");
  const double rel = (got.hessian() - host.hessian()).norm() / host.hessian().norm();
  MESSAGE("relative Frobenius error of the device H: " << rel);
  CHECK(rel < 1e-5);
  CHECK(got.count == host.count);
  CHECK(got.amax == host.amax);
  for (index_t j = 0; j < cols; ++j) CHECK(got.x2_sum[j] == doctest::Approx(host.x2_sum[j]).epsilon(1e-12));
}

TEST_CASE("device costs: many pairs in one pass equal the host's output_error") {
  constexpr index_t cols = 256;
  const auto st = gptq_test_stats(cols, 768, 55, false);
  const cost_hessian h(st);
  pqc::stream s;
  pqc::blas b(s);
  const pqc::device_hessian dh(st, s);
  std::vector<std::vector<float>> w, wh;
  std::vector<pqc::device_buffer<float>> dw, dwh;
  const std::vector<index_t> rows{7, 100, 33, 1};
  std::vector<pqc::cost_pair> pairs;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    w.push_back(test::weights(rows[i], cols, 60 + static_cast<unsigned>(i)));
    wh.push_back(dequantize(quantize_rtn<NVFP4>(w.back(), rows[i], cols, NVFP4::tensor_scale(weight_amax(w.back())))));
    dw.emplace_back(std::span<const float>(w.back()), s);
    dwh.emplace_back(std::span<const float>(wh.back()), s);
    pairs.push_back({dw.back().data(), dwh.back().data(), rows[i]});
  }
  for (index_t chunk : {index_t{8192}, index_t{16}}) {  // one chunk, and pairs split over chunks
    CAPTURE(chunk);
    const auto e = pqc::output_errors(pairs, dh.full.data(), cols, dh.count, b, s, chunk);
    for (std::size_t i = 0; i < rows.size(); ++i)
      CHECK(e[i] == doctest::Approx(output_error(w[i], wh[i], rows[i], cols, h)).epsilon(1e-5));
  }
}

TEST_CASE_TEMPLATE("quantize_linear's cuda backend agrees with the host backend", F, NVFP4, INT4_G128, MXFP8_E4M3) {
  pqc::install_quantize_linear<bundle<F>>();
  constexpr index_t rows = 64, cols = 384;
  const auto w = test::weights(rows, cols, 91);
  const auto st = gptq_test_stats(cols, 1024, 92, true);
  const auto held = gptq_test_stats(cols, 512, 93, true);
  for (rounding m : {rounding::gptq, rounding::gptq_sweep, rounding::sweep}) {
    for (int candidates : {1, 3}) {
      CAPTURE(rounding_name(m));
      CAPTURE(candidates);
      quant_options o;
      o.method = m;
      o.act_order = true;
      o.damping_candidates = candidates;
      const linear_input in{"test.linear", w, rows, cols, &st, std::nullopt, 1.0, &held};
      const auto host = quantize_linear<F>(in, o, nullptr, backend::host);
      const auto dev = quantize_linear<F>(in, o, nullptr, backend::cuda);
      CHECK(dev.kept == host.kept);
      CHECK(dev.rtn_output_error == doctest::Approx(host.rtn_output_error).epsilon(1e-5));
      CHECK(std::abs(dev.output_error - host.output_error) <= 0.005 * host.output_error);
      if (candidates > 1) CHECK(dev.damping == host.damping);
    }
  }
}
