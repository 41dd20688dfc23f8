// Seeded, reproducible sampling of one token from logits (for data-free calibration).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "pq/text/error.hpp"

namespace pq::text {

// std::mt19937_64's output sequence is fixed by the C++ standard for a given seed; the
// distributions of <random> are not, so pq draws its uniforms itself (uniform_unit).
using sampler_rng = std::mt19937_64;

// A double in [0, 1): the top 53 bits of one draw times 2^-53. Same value on every platform.
inline double uniform_unit(sampler_rng& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }

// Draws a token id from softmax(logits / temperature) by inverting the cumulative sum (in
// double, in id order) at one uniform_unit draw. temperature == 0 picks the first largest
// logit and consumes no draw. Throws on empty logits, a negative or non-finite temperature,
// NaN or +inf logits, or all logits -inf.
inline std::int32_t sample_token(std::span<const float> logits, float temperature, sampler_rng& rng) {
  if (logits.empty()) throw text_error("sample_token: no logits");
  if (!(temperature >= 0.0f) || !std::isfinite(temperature))
    throw text_error("sample_token: temperature " + std::to_string(temperature) + " is not a finite value >= 0");
  for (std::size_t i = 0; i < logits.size(); ++i)
    if (std::isnan(logits[i]) || logits[i] == INFINITY)
      throw text_error("sample_token: logit " + std::to_string(i) + " is " + std::to_string(logits[i]));
  const auto largest = std::max_element(logits.begin(), logits.end());
  if (*largest == -INFINITY) throw text_error("sample_token: every logit is -inf");
  const auto argmax = static_cast<std::int32_t>(largest - logits.begin());
  if (temperature == 0.0f) return argmax;

  std::vector<double> cumulative(logits.size());
  double total = 0.0;
  for (std::size_t i = 0; i < logits.size(); ++i) {
    total += std::exp((static_cast<double>(logits[i]) - *largest) / temperature);
    cumulative[i] = total;
  }
  const double target = uniform_unit(rng) * total;
  const auto chosen = std::upper_bound(cumulative.begin(), cumulative.end(), target);
  // Rounding can leave target == total; the last token with non-zero mass takes it then.
  if (chosen == cumulative.end()) {
    std::size_t last = logits.size() - 1;
    while (logits[last] == -INFINITY) --last;
    return static_cast<std::int32_t>(last);
  }
  return static_cast<std::int32_t>(chosen - cumulative.begin());
}

}  // namespace pq::text
