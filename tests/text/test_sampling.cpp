// pq::text::sample_token: seeded, reproducible, and distributed as softmax(logits / T).
#include <doctest/doctest.h>

#include <array>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include <pq/text/sampling.hpp>

using pq::text::sample_token;
using pq::text::sampler_rng;

namespace {

std::array<double, 3> frequencies(const std::vector<float>& logits, float temperature, int draws) {
  sampler_rng rng(7);
  std::array<double, 3> f{};
  for (int i = 0; i < draws; ++i) f.at(static_cast<std::size_t>(sample_token(logits, temperature, rng))) += 1.0 / draws;
  return f;
}

}  // namespace

TEST_CASE("the generator and the uniform draw are the standard's, not the library's") {
  // [rand.predef]: the 10000th output of a default-constructed mt19937_64 is 9981545732273789042.
  sampler_rng rng;
  rng.discard(9999);
  sampler_rng copy = rng;
  CHECK(copy() == 9981545732273789042ull);
  const double u = pq::text::uniform_unit(rng);
  CHECK(u == doctest::Approx(9981545732273789042.0 / 18446744073709551616.0).epsilon(1e-15));
  CHECK(u >= 0.0);
  CHECK(u < 1.0);
}

TEST_CASE("sampling inverts the cumulative distribution at the uniform draw") {
  // With the 10000th draw u = 0.5411..., token 1 of [0.5, 0.5] and token 0 of [0.6, 0.4].
  const auto draw = [](std::vector<float> logits) {
    sampler_rng rng;
    rng.discard(9999);
    return sample_token(logits, 1.0f, rng);
  };
  CHECK(draw({0.0f, 0.0f}) == 1);
  CHECK(draw({std::log(0.6f), std::log(0.4f)}) == 0);
  CHECK(draw({std::log(0.5f), -std::numeric_limits<float>::infinity(), std::log(0.5f)}) == 2);
}

TEST_CASE("sampling is deterministic for a seed and differs between seeds") {
  std::vector<float> logits(64);
  for (std::size_t i = 0; i < logits.size(); ++i) logits[i] = std::sin(static_cast<float>(i));
  const auto run = [&](std::uint64_t seed) {
    sampler_rng rng(seed);
    std::vector<std::int32_t> out;
    for (int i = 0; i < 200; ++i) out.push_back(sample_token(logits, 0.8f, rng));
    return out;
  };
  CHECK(run(42) == run(42));
  CHECK(run(42) != run(43));
}

TEST_CASE("frequencies follow softmax(logits / temperature)") {
  const std::vector<float> logits{std::log(0.1f), std::log(0.2f), std::log(0.7f)};
  const auto t1 = frequencies(logits, 1.0f, 20000);
  CHECK(t1[0] == doctest::Approx(0.1).epsilon(0.15));
  CHECK(t1[1] == doctest::Approx(0.2).epsilon(0.1));
  CHECK(t1[2] == doctest::Approx(0.7).epsilon(0.03));
  // T = 0.5 squares the probabilities: 1 : 4 : 49.
  const auto t05 = frequencies(logits, 0.5f, 20000);
  CHECK(t05[0] == doctest::Approx(1.0 / 54).epsilon(0.3));
  CHECK(t05[1] == doctest::Approx(4.0 / 54).epsilon(0.1));
  CHECK(t05[2] == doctest::Approx(49.0 / 54).epsilon(0.02));
}

TEST_CASE("temperature 0 is greedy and draws nothing") {
  sampler_rng rng(5), untouched(5);
  CHECK(sample_token(std::vector<float>{1.0f, 3.0f, 3.0f, -2.0f}, 0.0f, rng) == 1);
  CHECK(rng() == untouched());
}

TEST_CASE("bad logits or temperature are errors") {
  sampler_rng rng(1);
  const float inf = std::numeric_limits<float>::infinity();
  const auto message = [&](std::vector<float> logits, float t) {
    try {
      sample_token(logits, t, rng);
    } catch (const pq::text::text_error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  CHECK(message({}, 1.0f).find("no logits") != std::string::npos);
  CHECK(message({1.0f}, -1.0f).find("temperature") != std::string::npos);
  CHECK(message({1.0f}, std::nanf("")).find("temperature") != std::string::npos);
  CHECK(message({1.0f, std::nanf("")}, 1.0f).find("logit 1") != std::string::npos);
  CHECK(message({1.0f, inf}, 1.0f).find("logit 1") != std::string::npos);
  CHECK(message({-inf, -inf}, 1.0f).find("every logit is -inf") != std::string::npos);
}
