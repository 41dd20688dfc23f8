// SignRound's per-Linear state (quant/signround.hpp): zero iterations are RTN bit for bit, every state rounds
// onto the format's grid and through its packer, and the straight-through gradients of V and the min/max
// multipliers agree with finite differences of the relaxed rounding written out here from the INT4 spec
// (scale amax/7.5 symmetric, (max − min)/15 with zero point −min/scale asymmetric), not from the code under test.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include <pq/formats/bundle.hpp>
#include <pq/quant/packed.hpp>
#include <pq/quant/rtn.hpp>
#include <pq/quant/signround.hpp>

using namespace pq;

namespace {

std::vector<float> signround_test_weights(index_t rows, index_t cols, unsigned seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> n(0.0f, 0.02f);
  std::vector<float> w(static_cast<std::size_t>(rows * cols));
  for (auto& x : w) x = n(g);
  w[3] = 0.11f;  // an outlier sets a group's range
  return w;
}

template <Format F>
void check_zero_iterations_is_rtn() {
  const index_t rows = 6, cols = F::column_multiple * 2;
  const auto w = signround_test_weights(rows, cols, 5);
  const float ts = F::tensor_scale(weight_amax(w));
  const signround_state<F> s(w, rows, cols, ts);
  const auto a = s.rounded();
  const auto b = quantize_rtn<F>(w, rows, cols, ts);
  CHECK(a.codes == b.codes);
  CHECK(a.params == b.params);
  CHECK(a.tensor_scale == b.tensor_scale);
}

template <Format F>
void check_perturbed_state_packs() {
  const index_t rows = 4, cols = F::column_multiple * 2;
  const auto w = signround_test_weights(rows, cols, 9);
  signround_state<F> s(w, rows, cols, F::tensor_scale(weight_amax(w)));
  std::mt19937 g(3);
  std::uniform_real_distribution<float> v(-0.5f, 0.5f), m(0.5f, 1.0f);
  for (auto& x : s.v()) x = v(g);
  for (auto& x : s.min_scale()) x = m(g);
  for (auto& x : s.max_scale()) x = m(g);
  const auto q = s.rounded();
  for (auto c : q.codes) CHECK(c < F::element::code_count);
  for (float x : dequantize(q)) CHECK(std::isfinite(x));
  // every stored group parameter is one the format's own rule produces, so the packer stores it exactly
  const auto back = unpack<F>(pack(q, 1.0f), rows, cols);
  CHECK(back.codes == q.codes);
  CHECK(dequantize(back) == dequantize(q));
  // |V| <= 1/2 moves w by at most half a scale unit before rounding, and rounding is monotone: every element
  // lies between RTN's values of w - s/2 and w + s/2 at its group's parameters (on a non-uniform FP grid this
  // can be more than one step away from RTN's value of w, but never past those two)
  const auto d = dequantize(q);
  for (index_t r = 0; r < rows; ++r)
    for (index_t c = 0; c < cols; ++c) {
      const qparams p = q.group(r, c);
      const float x = w[r * cols + c], lo = F::dequantize(F::quantize(x - 0.5f * p.scale, p), p),
                  hi = F::dequantize(F::quantize(x + 0.5f * p.scale, p), p), e = d[static_cast<std::size_t>(r * cols + c)];
      CHECK(e >= std::min(lo, hi));
      CHECK(e <= std::max(lo, hi));
    }
}

template <Format F>
void check_ste_gradients() {
  CAPTURE(F::asymmetric);
  constexpr index_t cols = 128;
  const index_t rows = 1;
  auto w = signround_test_weights(rows, cols, 17);
  signround_state<F> s(w, rows, cols, 1.0f);
  std::mt19937 g(4);
  std::uniform_real_distribution<float> v(-0.4f, 0.4f), Gd(-1.0f, 1.0f);
  for (auto& x : s.v()) x = v(g);
  s.min_scale()[0] = 0.9f;
  s.max_scale()[0] = 0.8f;
  std::vector<float> G(static_cast<std::size_t>(cols));
  for (auto& x : G) x = Gd(g);
  std::vector<float> gv, gmin, gmax;
  s.gradients(G, gv, gmin, gmax);

  const qparams p = s.params(0);
  const auto q = s.rounded();
  // the relaxed rounding: round() replaced by its STE linearisation about the point where the codes were
  // taken (q = q0 + u − u0 while u0 rounds inside the INT4 range), the BF16 scale codec by the exact scale
  // times its ratio at the point, the zero point's rounding likewise by its value at the point plus z's change
  struct {
    std::vector<float> q0;
    double s0_ratio = 1.0;
  } rel;
  for (index_t j = 0; j < cols; ++j) rel.q0.push_back(static_cast<float>(F::element::value(q.codes[j])));
  {
    const float lo = 0.9f * *std::min_element(w.begin(), w.end()), hi = 0.8f * *std::max_element(w.begin(), w.end());
    const float exact = F::asymmetric ? (std::max(hi, 0.0f) - std::min(lo, 0.0f)) / 15.0f : std::max(std::abs(lo), std::abs(hi)) / 7.5f;
    rel.s0_ratio = p.scale / exact;
  }
  auto L = [&](const std::vector<double>& vv, double a, double b) {
    // u0 at the point (unperturbed), u at the perturbed parameters
    double lo = *std::min_element(w.begin(), w.end()) * a, hi = *std::max_element(w.begin(), w.end()) * b;
    double s_, z = 0;
    auto scale_of = [&](double l, double h, double& zz) {
      if (F::asymmetric) {
        const double mn = std::min(l, 0.0), mx = std::max(h, 0.0), sc = (mx - mn) / 15.0 * rel.s0_ratio;
        zz = -8.0 - mn / sc;
        return sc;
      }
      zz = 0;
      return std::max(std::abs(l), std::abs(h)) / 7.5 * rel.s0_ratio;
    };
    s_ = scale_of(lo, hi, z);
    // the format stores an integer zero point: the value uses it, moved by z's change (the STE of its rounding)
    double z_point = 0;
    scale_of(*std::min_element(w.begin(), w.end()) * 0.9, *std::max_element(w.begin(), w.end()) * 0.8, z_point);
    z = static_cast<double>(p.zero) + (z - z_point);
    double L = 0;
    for (index_t j = 0; j < cols; ++j) {
      const double u = w[j] / s_ + vv[j] + z;
      const double u0 = w[j] / p.scale + s.v()[j] + p.zero;  // where the code was taken
      const bool inside = u0 >= -8.5 && u0 <= 7.5;
      const double qq = inside ? rel.q0[j] + (u - u0) : rel.q0[j];
      L += G[j] * s_ * (qq - z);
    }
    return L;
  };
  std::vector<double> v0(s.v().begin(), s.v().end());
  const double h = 1e-4;
  for (index_t j : {index_t{0}, index_t{3}, index_t{50}, index_t{127}}) {
    auto vp = v0, vm = v0;
    vp[j] += h;
    vm[j] -= h;
    CHECK(gv[j] == doctest::Approx((L(vp, 0.9, 0.8) - L(vm, 0.9, 0.8)) / (2 * h)).epsilon(1e-3).scale(1e-6));
  }
  CHECK(gmin[0] == doctest::Approx((L(v0, 0.9 + h, 0.8) - L(v0, 0.9 - h, 0.8)) / (2 * h)).epsilon(2e-3).scale(1e-5));
  CHECK(gmax[0] == doctest::Approx((L(v0, 0.9, 0.8 + h) - L(v0, 0.9, 0.8 - h)) / (2 * h)).epsilon(2e-3).scale(1e-5));
}

}  // namespace

TEST_CASE("signround: zero iterations round exactly as RTN, every format") {
  check_zero_iterations_is_rtn<INT4_G128>();
  check_zero_iterations_is_rtn<INT4_G128_ASYM>();
  check_zero_iterations_is_rtn<INT8_CHANNEL>();
  check_zero_iterations_is_rtn<NVFP4>();
  check_zero_iterations_is_rtn<MXFP4>();
  check_zero_iterations_is_rtn<MXFP8_E4M3>();
  check_zero_iterations_is_rtn<FP8_CHANNEL>();
}

TEST_CASE("signround: any offsets and multipliers give codes on the grid that pack and unpack exactly") {
  check_perturbed_state_packs<INT4_G128>();
  check_perturbed_state_packs<INT4_G128_ASYM>();
  check_perturbed_state_packs<NVFP4>();
  check_perturbed_state_packs<MXFP4>();
  check_perturbed_state_packs<MXFP8_E4M3>();
}

TEST_CASE("signround: straight-through gradients match finite differences of the relaxed INT4 rounding") {
  check_ste_gradients<INT4_G128>();
  check_ste_gradients<INT4_G128_ASYM>();
}

TEST_CASE("signround: the learning rate is 1/iters, decayed linearly to zero") {
  signround_options o;
  o.iters = 200;
  CHECK(signround_lr(o, 0, false) == doctest::Approx(1.0 / 200));
  CHECK(signround_lr(o, 100, true) == doctest::Approx(0.5 / 200));
  // sign-SGD moves V by at most the summed rates: (iters + 1) / (2 iters), about the half step that lets an
  // element reach either grid neighbour and no further (AutoRound relies on the schedule, not a clamp)
  double total = 0;
  for (int i = 0; i < o.iters; ++i) total += signround_lr(o, i, false);
  CHECK(total == doctest::Approx((o.iters + 1.0) / (2.0 * o.iters)).epsilon(1e-5));
}

namespace {
// A start rounding as GPTQ leaves one: each group's scale from the format's rule on a shrunk range (as the sweep
// picks), and codes of weights moved by up to one and a half steps (as error feedback moves them).
template <Format F>
void check_start_reproduces_rounding() {
  const index_t rows = 8, cols = F::column_multiple * 2, gw = group_width<F>(cols), gpr = groups_per_row<F>(cols);
  const auto w = signround_test_weights(rows, cols, 11);
  const float ts = F::tensor_scale(weight_amax(w));
  std::mt19937 gen(3);
  std::uniform_real_distribution<float> shrink(0.6f, 1.0f), move(-1.5f, 1.5f);
  quantized_matrix<F> start{rows, cols, {}, {}, ts};
  start.codes.resize(w.size());
  start.params.resize(static_cast<std::size_t>(rows * gpr));
  std::size_t moved_far = 0;
  for (index_t r = 0; r < rows; ++r)
    for (index_t g = 0; g < gpr; ++g) {
      const float* x = w.data() + r * cols + g * gw;
      const float k = shrink(gen);
      const qparams p = F::group_params(k * *std::min_element(x, x + gw), k * *std::max_element(x, x + gw), ts);
      start.params[static_cast<std::size_t>(r * gpr + g)] = p;
      for (index_t c = 0; c < gw; ++c) {
        const float d = move(gen);
        moved_far += std::abs(d) > 0.5f;
        start.codes[static_cast<std::size_t>(r * cols + g * gw + c)] =
            static_cast<typename F::code_type>(F::quantize(x[c] + d * p.scale, p));
      }
    }
  REQUIRE(moved_far > w.size() / 3);
  signround_state<F> s(w, rows, cols, ts);
  s.start_from(start);
  const auto a = s.rounded();
  CHECK(a.params == start.params);
  // the same weights: codes equal but for the sign of a zero element (−0 + 0·s rounds as +0; same value)
  const auto x = dequantize(a), y = dequantize(start);
  std::size_t differ = 0;
  for (std::size_t i = 0; i < x.size(); ++i) differ += !(x[i] == y[i]);
  INFO(F::name);
  CHECK(differ == 0);
}
}  // namespace

TEST_CASE("signround: a start from another rounding (gptq+signround) rounds exactly as that rounding, every symmetric format") {
  check_start_reproduces_rounding<INT4_G128>();
  check_start_reproduces_rounding<INT8_CHANNEL>();
  check_start_reproduces_rounding<NVFP4>();
  check_start_reproduces_rounding<MXFP4>();
  check_start_reproduces_rounding<MXFP8_E4M3>();
  check_start_reproduces_rounding<FP8_CHANNEL>();
}
