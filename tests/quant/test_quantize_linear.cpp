// Tests of quantize_linear: every path is improve-or-keep against RTN, the reported cost is that of the
// exact tensors that ship (packed and read back), and bad input is one clear error naming the Linear.
#include <doctest/doctest.h>

#include <limits>
#include <vector>

#include <pq/formats/bundle.hpp>
#include <pq/quant/quantize_linear.hpp>

#include "synthetic.hpp"

using pq::index_t;

namespace {
constexpr index_t ql_rows = 32, ql_cols = 256, ql_tokens = 512;

struct fixture {
  std::vector<float> w = pq::test::weights(ql_rows, ql_cols, 41);
  pq::linear_stats calib{"model.layers.1.self_attn.o_proj", ql_cols};
  pq::linear_stats heldout{"model.layers.1.self_attn.o_proj", ql_cols};
  fixture() {
    const auto x = pq::test::correlated_activations(2 * ql_tokens, ql_cols, 42);
    calib.add(x.data(), ql_tokens);
    heldout.add(x.data() + ql_tokens * ql_cols, ql_tokens);
  }
  pq::linear_input input() const { return {calib.name, w, ql_rows, ql_cols, &calib, std::nullopt, 2.5, &heldout}; }
};
}  // namespace

TEST_CASE_TEMPLATE_DEFINE("quantize_linear", F, linear_suite) {
  const fixture fx;
  pq::gptq_factor_cache cache;
  for (pq::rounding m : {pq::rounding::rtn, pq::rounding::sweep, pq::rounding::gptq, pq::rounding::gptq_sweep}) {
    CAPTURE(pq::rounding_name(m));
    pq::quant_options o;
    o.method = m;
    o.act_order = true;
    o.threads = 2;
    const auto r = pq::quantize_linear<F>(fx.input(), o, &cache);
    CHECK(r.output_error <= r.rtn_output_error);
    CHECK(r.predicted_loss == doctest::Approx(2.5 * r.output_error));
    if (m == pq::rounding::rtn) CHECK(r.kept == pq::rounding::rtn);

    // What is priced is what ships: pack, read back, dequantize, measure again.
    const auto tensors = pq::pack(r.q, fx.calib.amax);
    const auto back = pq::unpack<F>(tensors, ql_rows, ql_cols);
    const auto deq = pq::dequantize(back);
    CHECK(deq == r.dequantized);
    CHECK(pq::output_error(fx.w, deq, ql_rows, ql_cols, pq::cost_hessian(fx.calib)) == doctest::Approx(r.output_error));
  }
}
TEST_CASE_TEMPLATE_APPLY(linear_suite, pq::test::as_tuple<pq::roundable_formats>::type);

TEST_CASE("GPTQ + sweep beats RTN on correlated activations, and the damping sweep picks from its grid") {
  const fixture fx;
  pq::quant_options o;
  o.damping_candidates = 3;
  const auto r = pq::quantize_linear<pq::NVFP4>(fx.input(), o);
  CHECK(r.output_error < 0.9 * r.rtn_output_error);
  CHECK(r.kept != pq::rounding::rtn);
  bool in_grid = false;
  for (float d : {0.001f, 0.01f, 0.1f}) in_grid = in_grid || std::abs(r.damping - d) <= 1e-6f;
  CHECK(in_grid);
}

TEST_CASE("a fixed thread count gives the same result on every run") {
  const fixture fx;
  pq::quant_options o;
  o.act_order = true;
  o.threads = 2;
  const auto a = pq::quantize_linear<pq::INT4_G128>(fx.input(), o);
  const auto b = pq::quantize_linear<pq::INT4_G128>(fx.input(), o);
  CHECK(a.q.codes == b.q.codes);
  CHECK(a.q.params == b.q.params);
  CHECK(a.output_error == b.output_error);
}

TEST_CASE("the decision unit's amax sets the NVFP4 tensor scale shared by siblings") {
  const fixture fx;
  auto in = fx.input();
  in.unit_amax = 4.0f * pq::weight_amax(fx.w);
  pq::quant_options o;
  o.method = pq::rounding::rtn;
  const auto r = pq::quantize_linear<pq::NVFP4>(in, o);
  CHECK(r.q.tensor_scale == pq::NVFP4::tensor_scale(*in.unit_amax));
}

TEST_CASE("bad input is one clear error naming the Linear") {
  fixture fx;
  const pq::quant_options o;
  const auto name = doctest::Contains("model.layers.1.self_attn.o_proj");
  SUBCASE("non-finite weight") {
    fx.w[5 * ql_cols + 3] = std::numeric_limits<float>::quiet_NaN();
    CHECK_THROWS_WITH_AS(pq::quantize_linear<pq::NVFP4>(fx.input(), o), name, pq::quant_error);
    fx.w[5 * ql_cols + 3] = -std::numeric_limits<float>::infinity();
    CHECK_THROWS_WITH_AS(pq::quantize_linear<pq::INT4_G128>(fx.input(), o), name, pq::quant_error);
  }
  SUBCASE("non-finite statistics") {
    fx.calib.H(3, 1) = std::numeric_limits<double>::infinity();
    CHECK_THROWS_WITH_AS(pq::quantize_linear<pq::NVFP4>(fx.input(), o), name, pq::quant_error);
  }
  SUBCASE("statistics of another shape, or none") {
    auto in = fx.input();
    const pq::linear_stats other("x", ql_cols / 2);
    in.stats = &other;
    CHECK_THROWS_WITH_AS(pq::quantize_linear<pq::NVFP4>(in, o), name, pq::quant_error);
    in.stats = nullptr;
    CHECK_THROWS_WITH_AS(pq::quantize_linear<pq::NVFP4>(in, o), name, pq::quant_error);
  }
  SUBCASE("a shape the format does not accept") {
    auto in = fx.input();
    in.cols = ql_cols / 2 + 8;  // 136: not a multiple of 16
    in.rows = 1;
    in.weight = std::span<const float>(fx.w).first(136);
    pq::linear_stats s(fx.calib.name, 136);
    s.H.setIdentity();
    s.count = 1;
    in.stats = &s;
    in.heldout = nullptr;
    CHECK_THROWS_WITH_AS(pq::quantize_linear<pq::NVFP4>(in, o), name, pq::quant_error);
  }
  SUBCASE("a damping sweep without held-out statistics") {
    auto in = fx.input();
    in.heldout = nullptr;
    pq::quant_options sweep = o;
    sweep.damping_candidates = 3;
    CHECK_THROWS_WITH_AS(pq::quantize_linear<pq::NVFP4>(in, sweep), name, pq::quant_error);
  }
}
