// bench/exhaustive_codecs.cpp: the branch-free encoders against the definition written with branches,
// over all 2^32 float bit patterns, for every minifloat codec and both integer codecs. Too slow for CI
// (minutes); the CI suite (tests/core/test_minifloat.cpp) checks a dense structured sample. Run by hand:
//   g++ -std=c++20 -O2 -Iinclude bench/exhaustive_codecs.cpp -o /tmp/exhaustive && /tmp/exhaustive
#include <bit>
#include <cstdint>
#include <cstdio>

#include <pq/core/bf16.hpp>
#include <pq/core/integer.hpp>
#include <pq/core/minifloat.hpp>

#include "../tests/core/reference_codecs.hpp"

template <class C, class Ref>
bool exhaustive(const char* name, Ref ref) {
  std::uint64_t mismatches = 0;
  std::uint32_t first = 0;
  for (std::uint64_t b = 0; b < (1ull << 32); ++b) {
    const float x = std::bit_cast<float>(static_cast<std::uint32_t>(b));
    if (C::encode(x) != ref(x) && mismatches++ == 0) first = static_cast<std::uint32_t>(b);
  }
  std::printf("%-6s all 2^32 floats: %llu mismatches%s", name, static_cast<unsigned long long>(mismatches),
              mismatches ? "" : "\n");
  if (mismatches) std::printf(" (first at bits 0x%08x)\n", first);
  std::fflush(stdout);
  return mismatches == 0;
}

int main() {
  bool ok = true;
  ok &= exhaustive<pq::e2m1>("E2M1", [](float x) { return pq::reference::encode<pq::e2m1>(x); });
  ok &= exhaustive<pq::e4m3>("E4M3", [](float x) { return pq::reference::encode<pq::e4m3>(x); });
  ok &= exhaustive<pq::e2m3>("E2M3", [](float x) { return pq::reference::encode<pq::e2m3>(x); });
  ok &= exhaustive<pq::e3m2>("E3M2", [](float x) { return pq::reference::encode<pq::e3m2>(x); });
  ok &= exhaustive<pq::e5m2>("E5M2", [](float x) { return pq::reference::encode<pq::e5m2>(x); });
  ok &= exhaustive<pq::ue4m3>("UE4M3", [](float x) { return pq::reference::encode<pq::ue4m3>(x); });
  ok &= exhaustive<pq::int4>("INT4", [](float x) { return pq::reference::encode_int<pq::int4>(x); });
  ok &= exhaustive<pq::int8>("INT8", [](float x) { return pq::reference::encode_int<pq::int8>(x); });
  return ok ? 0 : 1;
}
