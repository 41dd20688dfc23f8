// Helpers shared by the host suite of the packing path (tests/quant/test_packed.cpp) and the CUDA suites:
// weights with every awkward class, dtype conversions, byte-for-byte comparison of packed tensors.
#pragma once
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include <pq/formats/quantized.hpp>
#include <pq/quant/packed.hpp>

namespace pq::test {

// Weights with every awkward class: normal values, an all-zero group, float subnormals, values at and
// near the formats' maxima after scaling, a single outlier per row, exact ties of the element grid.
inline std::vector<float> awkward_weights(index_t rows, index_t cols, unsigned seed) {
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
template <> inline std::vector<float> narrow<float>(const std::vector<float>& w) { return w; }
template <> inline std::vector<bf16_bits> narrow<bf16_bits>(const std::vector<float>& w) {
  std::vector<bf16_bits> o(w.size());
  for (std::size_t i = 0; i < w.size(); ++i) o[i] = from_float<bf16_bits>(w[i]);
  return o;
}
template <> inline std::vector<fp16_bits> narrow<fp16_bits>(const std::vector<float>& w) {
  std::vector<fp16_bits> o(w.size());
  for (std::size_t i = 0; i < w.size(); ++i) o[i] = from_float<fp16_bits>(w[i]);
  return o;
}
template <class In> std::vector<float> widen(const std::vector<In>& w) {
  std::vector<float> o(w.size());
  for (std::size_t i = 0; i < w.size(); ++i) o[i] = to_float(w[i]);
  return o;
}

inline void check_same(const std::vector<packed_tensor>& a, const std::vector<packed_tensor>& b) {
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

}  // namespace pq::test
