// Element and scale codecs against the values the spec and the OCP MX specification give.
#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <limits>
#include <random>
#include <tuple>
#include <vector>

#include <pq/core/bf16.hpp>
#include <pq/core/integer.hpp>
#include <pq/core/minifloat.hpp>

#include "codec_sample.hpp"
#include "reference_codecs.hpp"

using namespace pq;

TEST_CASE("E2M1 decodes every code to the spec's magnitudes, sign in bit 3") {
  const float mags[8] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6};
  for (unsigned c = 0; c < 16; ++c) {
    const float expect = (c & 8) ? -mags[c & 7] : mags[c & 7];
    CHECK(e2m1::decode(c) == expect);
    CHECK(std::signbit(e2m1::decode(c)) == bool(c & 8));
  }
  CHECK(e2m1::max_finite == 6.0f);
}

TEST_CASE("E2M1 rounding follows compressed-tensors cast_to_fp4 boundaries") {
  struct row { float lo, hi; bool lo_in, hi_in; float value; };
  // ≤0.25→0, (0.25,0.75)→0.5, [0.75,1.25]→1, (1.25,1.75)→1.5, [1.75,2.5]→2, (2.5,3.5)→3, [3.5,5]→4, >5→6
  const row rows[] = {{0, 0.25f, true, true, 0},     {0.25f, 0.75f, false, false, 0.5f}, {0.75f, 1.25f, true, true, 1},
                      {1.25f, 1.75f, false, false, 1.5f}, {1.75f, 2.5f, true, true, 2},  {2.5f, 3.5f, false, false, 3},
                      {3.5f, 5, true, true, 4},        {5, 1e30f, false, true, 6}};
  for (const row& r : rows) {
    const float lo = r.lo_in ? r.lo : std::nextafter(r.lo, 1e31f);
    const float hi = r.hi_in ? r.hi : std::nextafter(r.hi, 0.0f);
    CHECK(e2m1::round(lo) == r.value);
    CHECK(e2m1::round(hi) == r.value);
    CHECK(e2m1::round((lo + hi) / 2) == r.value);
    CHECK(e2m1::round(-lo) == -r.value);
  }
  CHECK(e2m1::encode(-0.1f) == 0x8u);  // sign kept: -0
  CHECK(e2m1::encode(INFINITY) == 0x7u);
  CHECK(e2m1::encode(-INFINITY) == 0xFu);
  CHECK(e2m1::encode(NAN) == 0x7u);  // no NaN code: +max, as PTX satfinite
}

TEST_CASE("E4M3 (fn): spec examples, no infinity, NaN only at 0x7F/0xFF, max 448") {
  CHECK(e4m3::encode(1.0f) == 0x38u);
  CHECK(e4m3::encode(0.125f) == 0x20u);
  CHECK(e4m3::decode(0x7E) == 448.0f);
  CHECK(e4m3::max_finite == 448.0f);
  CHECK(std::isnan(e4m3::decode(0x7F)));
  CHECK(std::isnan(e4m3::decode(0xFF)));
  CHECK(e4m3::decode(0x08) == std::ldexp(1.0f, -6));  // smallest normal
  for (unsigned m = 1; m < 8; ++m) CHECK(e4m3::decode(m) == m * std::ldexp(1.0f, -9));  // subnormals
  CHECK(e4m3::encode(1000.0f) == 0x7Eu);
  CHECK(e4m3::encode(-1000.0f) == 0xFEu);
  CHECK(e4m3::encode(INFINITY) == 0x7Eu);
  CHECK(e4m3::encode(NAN) == 0x7Fu);
  CHECK(e4m3::encode(464.0f) == 0x7Eu);  // above the last finite: saturates rather than NaN
}

TEST_CASE("E5M2: IEEE specials, max 57344") {
  CHECK(e5m2::max_finite == 57344.0f);
  CHECK(std::isinf(e5m2::decode(0x7C)));
  CHECK(std::isnan(e5m2::decode(0x7D)));
  CHECK(e5m2::decode(0x01) == std::ldexp(1.0f, -16));
  CHECK(e5m2::encode(1.0f) == 0x3Cu);
  CHECK(e5m2::encode(1e9f) == 0x7Bu);
}

TEST_CASE("FP6 and unsigned scale codecs") {
  CHECK(e2m3::max_finite == 7.5f);
  CHECK(e2m3::decode(1) == 0.125f);
  CHECK(e3m2::max_finite == 28.0f);
  CHECK(e3m2::decode(1) == 0.0625f);
  CHECK(ue4m3::max_finite == 448.0f);
  CHECK(ue4m3::encode(-3.0f) == 0u);
  CHECK(std::isnan(ue4m3::decode(0x7F)));
  // E8M0: value 2^(e-127), 255 is NaN, no zero.
  CHECK(ue8m0::encode(0.25f) == 125u);
  CHECK(ue8m0::decode(127) == 1.0f);
  CHECK(ue8m0::decode(0) == std::ldexp(1.0f, -127));
  CHECK(ue8m0::decode(254) == std::ldexp(1.0f, 127));
  CHECK(std::isnan(ue8m0::decode(255)));
}

namespace {
// Independent oracle: the nearest representable value by exhaustive search, ties to the even code.
template <class C>
std::uint32_t nearest_code(float x) {
  std::uint32_t best = 0;
  double best_err = std::numeric_limits<double>::infinity();
  for (std::uint32_t c = 0; c < C::code_count; ++c) {
    const float v = C::decode(c);
    if (std::isnan(v) || std::isinf(v)) continue;
    if (std::signbit(v) != std::signbit(x)) continue;  // each sign has its own zero
    const double err = std::fabs(double(x) - double(v));
    const bool tie = err == best_err;
    if (err < best_err || (tie && (c & 1u) == 0u && (best & 1u) != 0u)) {
      best = c;
      best_err = err;
    }
  }
  return best;
}
}  // namespace

TEST_CASE_TEMPLATE("codec invariants", C, e2m1, e2m3, e3m2, e4m3, e5m2, ue4m3, ue8m0) {
  SUBCASE("every finite code round-trips") {
    for (std::uint32_t c = 0; c < C::code_count; ++c) {
      const float v = C::decode(c);
      if (std::isnan(v) || std::isinf(v)) continue;
      CHECK(C::encode(v) == c);
    }
  }
  SUBCASE("decode is strictly increasing over magnitude codes") {
    for (std::uint32_t c = 1; c <= C::max_code; ++c) CHECK(C::decode(c) > C::decode(c - 1));
  }
  SUBCASE("midpoints go to the even code; just off the midpoint goes to the nearer") {
    for (std::uint32_t c = 0; c < C::max_code; ++c) {
      const float a = C::decode(c), b = C::decode(c + 1);
      const float mid = (a + b) / 2;  // exact: one more bit than the codec has
      // Ties go to the even significand; with no mantissa bits (UE8M0) that is the upper power of two.
      const std::uint32_t even = C::mantissa_bits == 0 ? c + 1 : ((c & 1u) ? c + 1 : c);
      CHECK(C::encode(mid) == even);
      CHECK(C::encode(std::nextafter(mid, a)) == c);
      CHECK(C::encode(std::nextafter(mid, b)) == c + 1);
    }
  }
  SUBCASE("saturation") {
    CHECK(C::encode(C::max_finite * 4) == C::max_code);
    CHECK(C::encode(INFINITY) == C::max_code);
    if constexpr (C::is_signed) CHECK(C::encode(-C::max_finite * 4) == (C::max_code | C::sign_mask));
  }
  SUBCASE("agrees with exhaustive nearest search on random inputs") {
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> u(-1.2f, 1.2f);
    for (int i = 0; i < 3000; ++i) {
      float x = u(rng) * C::max_finite;
      if (!C::is_signed) x = std::fabs(x);
      if (std::fabs(x) >= C::max_finite) continue;
      if (std::fabs(x) < C::decode(0) ) continue;  // below UE8M0's smallest value (no zero)
      CHECK(C::encode(x) == nearest_code<C>(x));
    }
  }
}

TEST_CASE("bf16: RNE on bit 16, NaN kept, overflow to infinity") {
  CHECK(bf16::encode(1.0f) == 0x3F80u);
  CHECK(bf16::round(1.0f + std::ldexp(1.0f, -8)) == 1.0f);                               // tie to even
  CHECK(bf16::round(1.0f + 3 * std::ldexp(1.0f, -8)) == 1.0f + std::ldexp(1.0f, -6));   // tie to even (up)
  CHECK(bf16::round(1.0f + std::ldexp(1.0f, -8) + std::ldexp(1.0f, -20)) == 1.0f + std::ldexp(1.0f, -7));
  CHECK(std::isnan(bf16::round(NAN)));
  CHECK(std::isinf(bf16::round(3.4e38f)));
  std::mt19937 rng(3);
  std::uniform_real_distribution<double> u(-1e4, 1e4);
  for (int i = 0; i < 2000; ++i) {  // independent reference: nearest of the two bf16 neighbours in double
    const float x = static_cast<float>(u(rng));
    const std::uint32_t b = std::bit_cast<std::uint32_t>(x) & 0xFFFF0000u;
    const float lo = std::bit_cast<float>(b), hi = std::bit_cast<float>(b + 0x10000u);
    const double dl = std::fabs(double(x) - lo), dh = std::fabs(double(x) - hi);
    const float expect = dl < dh ? lo : dh < dl ? hi : (((b >> 16) & 1u) ? hi : lo);
    CHECK(bf16::round(x) == expect);
  }
}

TEST_CASE("integer codes: RNE, clamp, offset code") {
  CHECK(int4::encode(2.5f) == 2u + 8u);
  CHECK(int4::encode(3.5f) == 4u + 8u);
  CHECK(int4::encode(-2.5f) == 8u - 2u);
  CHECK(int4::encode(7.5f) == 15u);   // clamped to 7
  CHECK(int4::encode(-8.5f) == 0u);   // -8
  CHECK(int4::value(0) == -8);
  CHECK(int8::encode(127.6f) == 255u);
  CHECK(int8::value(int8::encode(-128.0f)) == -128);
  for (int q = -8; q <= 7; ++q) CHECK(int4::value(int4::encode(float(q))) == q);
}

TEST_CASE("round_half_even matches rint in the default rounding mode") {
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> u(-300.0f, 300.0f);
  for (int i = 0; i < 5000; ++i) {
    float x = u(rng);
    if (i % 3 == 0) x = std::round(x * 2) / 2;  // exact halves
    CHECK(round_half_even(x) == std::nearbyint(x));
  }
}

// The branch-free encoders against the definition written with branches (tests/core/reference_codecs.hpp),
// compared as bits over a dense structured sample of every input class (codec_sample.hpp: codes,
// midpoints and their neighbours, ±0, subnormals, ±max and beyond, ±inf, NaNs, a stride over all 2^32
// patterns). bench/exhaustive_codecs.cpp runs the same comparison over all 2^32 floats, by hand.
TEST_CASE_TEMPLATE("branch-free encode equals the definition, bit for bit", C, e2m1, e2m3, e3m2, e4m3, e5m2, ue4m3,
                   ue8m0) {
  const auto x = pq::test::codec_sample<C>();
  std::size_t mismatches = 0;
  for (float v : x)
    if (C::encode(v) != pq::reference::encode<C>(v)) {
      if (++mismatches < 8) CHECK(C::encode(v) == pq::reference::encode<C>(v));
    }
  CHECK(mismatches == 0);
  CHECK(x.size() > 1000000);
  for (std::uint32_t c = 0; c < 2 * C::code_count; ++c) {  // decode, every code (and bits above the code ignored)
    CAPTURE(c);
    CHECK(std::bit_cast<std::uint32_t>(C::decode(c)) == std::bit_cast<std::uint32_t>(pq::reference::decode<C>(c)));
  }
}

TEST_CASE_TEMPLATE("branch-free integer encode equals clamp + round_half_even", I, int4, int8) {
  const auto x = pq::test::codec_sample<e5m2>();
  std::size_t mismatches = 0;
  for (float v : x)
    for (float s : {1.0f, 0.25f, 0.01f}) {
      const float y = v * s;
      mismatches += I::encode(y) != pq::reference::encode_int<I>(y);
    }
  for (int k = -2 * I::offset; k <= 2 * static_cast<int>(I::offset); ++k) {  // every half-integer in range
    const float y = 0.5f * static_cast<float>(k);
    mismatches += I::encode(y) != pq::reference::encode_int<I>(y);
    mismatches += I::encode(std::nextafter(y, 1e9f)) != pq::reference::encode_int<I>(std::nextafter(y, 1e9f));
    mismatches += I::encode(std::nextafter(y, -1e9f)) != pq::reference::encode_int<I>(std::nextafter(y, -1e9f));
  }
  CHECK(mismatches == 0);
}
