// The packing path's building blocks (pq/quant/packed.hpp), run in host loops, against the reference path:
// pack(quantize_rtn(...)) byte for byte, dequantize(unpack(...)) bit for bit, and pack(scale_sweep(RTN))
// for the fused sweep, for every packable format and every input dtype. The CUDA kernels run the same
// building blocks; tests/cuda compares their bytes with the same reference.
#include <doctest/doctest.h>

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

using namespace pq;

namespace {
template <class List> struct as_tuple;
template <class... Ts> struct as_tuple<type_list<Ts...>> { using type = std::tuple<Ts...>; };

// Weights with every awkward class: normal values, an all-zero group, float subnormals, values at and
// near the formats' maxima after scaling, a single outlier per row, exact ties of the element grid.
std::vector<float> awkward_weights(index_t rows, index_t cols, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 0.02f);
  std::vector<float> w(static_cast<std::size_t>(rows * cols));
  for (auto& v : w) v = nd(rng);
  for (index_t c = 0; c < std::min<index_t>(cols, 32); ++c) w[static_cast<std::size_t>(c)] = 0.0f;  // zero group
  if (rows > 1)
    for (index_t c = 0; c < cols; ++c) w[static_cast<std::size_t>(cols + c)] = std::ldexp(1.0f, -140) * float(c % 7);
  if (rows > 2) w[static_cast<std::size_t>(2 * cols + 3)] = 3.0f;  // outlier
  if (rows > 3)
    for (index_t c = 0; c < cols; ++c) w[static_cast<std::size_t>(3 * cols + c)] = 0.25f * float(c % 13) - 1.5f;
  return w;
}

template <class In> std::vector<In> narrow(const std::vector<float>& w);
template <> std::vector<float> narrow<float>(const std::vector<float>& w) { return w; }
template <> std::vector<bf16_bits> narrow<bf16_bits>(const std::vector<float>& w) {
  std::vector<bf16_bits> o(w.size());
  for (std::size_t i = 0; i < w.size(); ++i) o[i] = from_float<bf16_bits>(w[i]);
  return o;
}
template <> std::vector<fp16_bits> narrow<fp16_bits>(const std::vector<float>& w) {
  std::vector<fp16_bits> o(w.size());
  for (std::size_t i = 0; i < w.size(); ++i) o[i] = from_float<fp16_bits>(w[i]);
  return o;
}
template <class In> std::vector<float> widen(const std::vector<In>& w) {
  std::vector<float> o(w.size());
  for (std::size_t i = 0; i < w.size(); ++i) o[i] = to_float(w[i]);
  return o;
}

void check_same(const std::vector<packed_tensor>& a, const std::vector<packed_tensor>& b) {
  REQUIRE(a.size() == b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    CAPTURE(a[i].suffix);
    CHECK(a[i].suffix == b[i].suffix);
    CHECK(a[i].type == b[i].type);
    CHECK(a[i].shape == b[i].shape);
    CHECK(a[i].bytes.size() == b[i].bytes.size());
    CHECK(a[i].bytes == b[i].bytes);
  }
}

template <class F> std::vector<index_t> test_cols() {
  if constexpr (F::group_size == 0) return {37, 200, 1024};  // row formats: odd widths, partial segments and words
  else return {F::group_size, 4 * F::group_size, 3 * 128};
}

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
