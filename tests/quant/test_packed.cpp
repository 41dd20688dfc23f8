// The packing path's building blocks (pq/quant/packed.hpp), run in host loops, against the reference path:
// pack(quantize_rtn(...)) byte for byte, dequantize(unpack(...)) bit for bit, and pack(scale_sweep(RTN))
// for the fused sweep, for every packable format and every input dtype. The CUDA kernels run the same
// building blocks; tests/cuda compares their bytes with the same reference.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <random>
#include <tuple>
#include <vector>

#include <pq/formats/bundle.hpp>
#include <pq/quant/packed.hpp>
#include <pq/quant/rtn.hpp>
#include <pq/quant/scale_sweep.hpp>

#include "mini_safetensors.hpp"
#include "packed_testing.hpp"

using namespace pq;

namespace {
using pq::test::awkward_weights;
using pq::test::narrow;
using pq::test::widen;
using pq::test::check_same;
using pq::test::test_cols;
template <class List> struct as_tuple;
template <class... Ts> struct as_tuple<type_list<Ts...>> { using type = std::tuple<Ts...>; };

template <class F, class In>
void check_format_dtype(index_t rows, index_t cols, unsigned seed) {
  CAPTURE(rows);
  CAPTURE(cols);
  const auto w_in = narrow<In>(awkward_weights(rows, cols, seed));
  const auto w = widen(w_in);
  const std::span<const In> parts[] = {w_in};
  const float ts = F::tensor_scale(unit_amax<In>(parts));
  CHECK(ts == F::tensor_scale(weight_amax(w)));
  const auto ref_q = quantize_rtn<F>(w, rows, cols, ts);
  const float input_amax = 2.5f;
  const auto ref = pack(ref_q, input_amax);

  auto buf = make_packed_buffers<F>(rows, cols);
  quantize_pack_host<F>(w_in.data(), rows, cols, ts, buf, 2);
  check_same(as_packed_tensors<F>(buf, ref_q.tensor_scale, input_amax), ref);

  // dequantize: the values a checkpoint reader computes
  const auto ref_deq = dequantize(unpack<F>(ref, rows, cols));
  std::vector<float> deq(static_cast<std::size_t>(rows * cols));
  dequantize_host<F>(buf, ref_q.tensor_scale, deq.data(), 2);
  CHECK(std::memcmp(deq.data(), ref_deq.data(), deq.size() * 4) == 0);
  std::vector<bf16_bits> deq16(deq.size());
  dequantize_host<F>(buf, ref_q.tensor_scale, deq16.data(), 1);
  std::size_t bad = 0;
  for (std::size_t i = 0; i < deq.size(); ++i) bad += deq16[i].bits != bf16::encode(ref_deq[i]);
  CHECK(bad == 0);

  // RTN + sweep, fused, against scale_sweep of the RTN rounding
  std::vector<double> d(static_cast<std::size_t>(cols));
  std::mt19937 rng(seed + 1);
  std::uniform_real_distribution<double> u(0.1, 2.0);
  for (auto& x : d) x = u(rng);
  auto ref_s = ref_q;
  scale_sweep<F>(w, d, ref_s, {}, 1);
  auto sbuf = make_packed_buffers<F>(rows, cols);
  sweep_pack_host<F>(w_in.data(), d.data(), rows, cols, ts, {}, sbuf, 2);
  check_same(as_packed_tensors<F>(sbuf, ref_q.tensor_scale, input_amax), pack(ref_s, input_amax));
}
}  // namespace

TEST_CASE_TEMPLATE_DEFINE("packing path equals pack(quantize_rtn), dequantize and sweep too", F, packed_path) {
  for (index_t cols : test_cols<F>()) {
    check_format_dtype<F, float>(7, cols, 3);
    check_format_dtype<F, bf16_bits>(16, cols, 4);
    check_format_dtype<F, fp16_bits>(5, cols, 5);
  }
}
TEST_CASE_TEMPLATE_APPLY(packed_path, as_tuple<packable_formats>::type);

TEST_CASE("the packable formats are the exportable quantized ones") {
  CHECK(packable_formats::size == 8);  // NVFP4, NVFP4A16, MXFP4, MXFP8_E4M3, FP8_CHANNEL, INT4_G128(_ASYM), INT8_CHANNEL
  CHECK(!contains_v<MXFP6_E2M3, packable_formats>);
  CHECK(!contains_v<BF16, packable_formats>);
}

TEST_CASE_TEMPLATE("segments cover every element once, inside one group", F, NVFP4, MXFP4, INT4_G128, FP8_CHANNEL) {
  for (index_t cols : test_cols<F>()) {
    const segmentation<F, 16> s(3, cols);
    std::vector<int> hits(static_cast<std::size_t>(3 * cols), 0);
    for (index_t i = 0; i < s.count(); ++i) {
      const index_t r = s.row(i), c = s.col(i);
      const int n = s.size(i);
      CHECK(n >= 1);
      if (F::group_size) CHECK(c / F::group_size == (c + n - 1) / F::group_size);
      for (int j = 0; j < n; ++j) ++hits[static_cast<std::size_t>(r * cols + c + j)];
    }
    for (int h : hits) CHECK(h == 1);
  }
}

TEST_CASE("unit amax spans every Linear of a unit and refuses non-finite weights, naming the unit") {
  const std::vector<float> a{0.5f, -2.0f}, b{3.0f, 1.0f};
  const std::span<const float> parts[] = {a, b};
  CHECK(unit_amax<float>(parts) == 3.0f);
  std::vector<float> c{1.0f, NAN};
  const std::span<const float> bad[] = {a, c};
  CHECK_THROWS_WITH_AS(unit_amax<float>(bad, "layers.0.mlp"), "non-finite weight in layers.0.mlp", quant_error);
  std::vector<float> inf{1.0f, -INFINITY};
  const std::span<const float> bad2[] = {inf};
  CHECK_THROWS_AS(unit_amax<float>(bad2), quant_error);
}

TEST_CASE("fp16 widening and narrowing are exact IEEE binary16") {
  CHECK(to_float(fp16_bits{0x3c00}) == 1.0f);
  CHECK(to_float(fp16_bits{0x7bff}) == 65504.0f);
  CHECK(to_float(fp16_bits{0x0001}) == std::ldexp(1.0f, -24));
  CHECK(from_float<fp16_bits>(65519.0f).bits == 0x7bff);
  CHECK(from_float<fp16_bits>(65520.0f).bits == 0x7c00);  // ties away from the largest finite: infinity
  CHECK(from_float<fp16_bits>(-1.0f).bits == 0xbc00);
  CHECK(std::isnan(to_float(from_float<fp16_bits>(NAN))));
}

TEST_CASE_TEMPLATE("real weights of tiny-llama-code (bf16) pack identically", F, NVFP4, MXFP4, MXFP8_E4M3, INT4_G128,
                   INT4_G128_ASYM, FP8_CHANNEL) {
  const std::string file = std::string(PQ_MODELS_DIR) + "/tiny-llama-code/model-00001-of-00002.safetensors";
  if (!std::filesystem::exists(file)) {
    MESSAGE("skipped: " << file << " is absent");
    return;
  }
  const test::mini_safetensors st(file);
  const std::string name = "model.layers.0.mlp.gate_proj.weight";
  const auto shape = st.shape(name);
  const index_t rows = shape[0], cols = shape[1];
  const auto w_in = narrow<bf16_bits>(st.floats(name));
  const auto w = widen(w_in);
  const float ts = F::tensor_scale(weight_amax(w));
  const auto ref = pack(quantize_rtn<F>(w, rows, cols, ts), 1.0f);
  auto buf = make_packed_buffers<F>(rows, cols);
  quantize_pack_host<F>(w_in.data(), rows, cols, ts, buf, 2);
  check_same(as_packed_tensors<F>(buf, F::has_tensor_scale ? ts : 1.0f, 1.0f), ref);
}

TEST_CASE("item_of maps every block of a batched grid to its item (empty items skipped)") {
  const index_t start[] = {0, 3, 3, 10, 11};  // item 1 has no blocks; 4 items, 11 blocks
  int expect[11] = {0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 3};
  for (index_t b = 0; b < 11; ++b) CHECK(item_of(start, 4, b) == expect[b]);
}

TEST_CASE_TEMPLATE_DEFINE("range_of gives every format the parameters std::minmax_element gives", F, range_params) {
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (index_t n : {index_t{16}, index_t{32}, index_t{128}, index_t{37}}) {
    for (int trial = 0; trial < 400; ++trial) {
      std::vector<float> x(static_cast<std::size_t>(n));
      for (auto& v : x) v = trial % 4 == 0 ? 0.0f : trial % 4 == 1 ? (nd(rng) < 0 ? -0.0f : 0.0f) : nd(rng);
      if (trial % 4 == 1) x[static_cast<std::size_t>(trial) % x.size()] = nd(rng);  // one value among signed zeros
      const auto [lo, hi] = std::minmax_element(x.begin(), x.end());
      const value_range r = range_of(x.data(), n);
      CHECK(r.lo == *lo);
      CHECK(r.hi == *hi);
      CHECK(F::group_params(r.lo, r.hi, 100.0f) == F::group_params(*lo, *hi, 100.0f));
    }
  }
}
TEST_CASE_TEMPLATE_APPLY(range_params, as_tuple<packable_formats>::type);
