// A dense, structured sample of float bit patterns for proving two encoders equal: every value a codec
// decodes to and the two floats on either side of it, every midpoint between neighbouring codes and its
// two neighbours, both signs, ±0, ±infinity, NaNs of both signs and several payloads, every float subnormal
// exponent class, and a stride over all 2^32 patterns (a prime stride, so every exponent and low mantissa
// bit pattern is hit). Used by the host suite and by the device suite (the kernels run it too).
#pragma once
#include <bit>
#include <cmath>
#include <cstdint>
#include <vector>

namespace pq::test {

template <class C>
std::vector<float> codec_sample(std::uint32_t stride = 4093) {
  std::vector<std::uint32_t> bits;
  auto around = [&](float v) {
    const std::uint32_t b = std::bit_cast<std::uint32_t>(v);
    for (std::uint32_t s : {0u, 0x80000000u})
      for (int d = -2; d <= 2; ++d) bits.push_back((b + static_cast<std::uint32_t>(d)) ^ s);
  };
  for (std::uint32_t c = 0; c < C::code_count; ++c) {
    const float v = C::decode(c);
    if (!std::isfinite(v)) continue;
    around(v);
    if (c + 1 < C::code_count && std::isfinite(C::decode(c + 1)) && C::decode(c + 1) > v)
      around((v + C::decode(c + 1)) / 2);  // exact: one bit more than the codec has
  }
  for (std::uint32_t b : {0u, 1u, 2u, 0x7fffffu, 0x800000u, 0x7f7fffffu, 0x7f800000u, 0x7f800001u, 0x7fc00000u,
                          0x7fffffffu, 0x7fa00000u})
    for (std::uint32_t s : {0u, 0x80000000u}) bits.push_back(b | s);
  for (int k = 0; k < 23; ++k) bits.push_back((1u << k) | ((1u << k) - 1u) / 3u);  // float subnormals
  for (std::uint64_t b = 0; b < (1ull << 32); b += stride) bits.push_back(static_cast<std::uint32_t>(b));
  std::vector<float> x(bits.size());
  for (std::size_t i = 0; i < bits.size(); ++i) x[i] = std::bit_cast<float>(bits[i]);
  return x;
}

}  // namespace pq::test
