// tests/quant/synthetic.hpp: reproducible weights and correlated activations for the quant suites.
#pragma once
#include <cmath>
#include <random>
#include <vector>

#include <pq/config.hpp>

namespace pq::test {

// Row-major [rows, cols] weights ~ N(0, 0.02²) with a few large outliers, like a trained Linear.
inline std::vector<float> weights(index_t rows, index_t cols, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> n(0.0f, 0.02f);
  std::vector<float> w(static_cast<std::size_t>(rows * cols));
  for (auto& x : w) x = n(rng);
  for (std::size_t i = 0; i < w.size(); i += 97) w[i] *= 6.0f;
  return w;
}

// Row-major [tokens, cols] activations with strongly correlated channels (a low-rank mix plus noise) and
// per-channel scales spanning two decades, like the inputs of a real Linear.
inline std::vector<float> correlated_activations(index_t tokens, index_t cols, unsigned seed, index_t rank = 8) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> n(0.0f, 1.0f);
  std::vector<float> mix(static_cast<std::size_t>(rank * cols)), scale(static_cast<std::size_t>(cols));
  for (auto& m : mix) m = n(rng);
  for (index_t j = 0; j < cols; ++j)
    scale[static_cast<std::size_t>(j)] =
        std::pow(10.0f, 2.0f * static_cast<float>((j * 37) % cols) / static_cast<float>(cols) - 1.0f);
  std::vector<float> x(static_cast<std::size_t>(tokens * cols));
  std::vector<float> z(static_cast<std::size_t>(rank));
  for (index_t t = 0; t < tokens; ++t) {
    for (auto& v : z) v = n(rng);
    for (index_t j = 0; j < cols; ++j) {
      float s = 0.3f * n(rng);
      for (index_t k = 0; k < rank; ++k)
        s += z[static_cast<std::size_t>(k)] * mix[static_cast<std::size_t>(k * cols + j)];
      x[static_cast<std::size_t>(t * cols + j)] = s * scale[static_cast<std::size_t>(j)];
    }
  }
  return x;
}

}  // namespace pq::test

#include <tuple>

#include <pq/core/type_list.hpp>

namespace pq::test {
// A type_list as the std::tuple TEST_CASE_TEMPLATE_APPLY takes.
template <class L> struct as_tuple;
template <class... Ts> struct as_tuple<type_list<Ts...>> { using type = std::tuple<Ts...>; };
}  // namespace pq::test
