// pq/core/hash.hpp: the one non-cryptographic hash of pq: 64-bit FNV-1a. Used where a value must be stable
// across runs, platforms and standard libraries (std::hash is none of these): the work folder's key, the
// seeds that synthetic weights and self-calibration sequences are drawn from.
#pragma once
#include <bit>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <type_traits>

namespace pq {

struct fnv1a {
  // pq's start value. FNV's published offset basis is 14695981039346656037; pq has always started from
  // this value (a digit short of it), and the synthetic models, their seeds and the stored digests of the
  // tests depend on it, so it stays. The algorithm is FNV-1a's, checked below with the published basis.
  static constexpr std::uint64_t offset_basis = 1469598103934665603ull;
  static constexpr std::uint64_t published_offset_basis = 14695981039346656037ull;
  static constexpr std::uint64_t prime = 1099511628211ull;
  std::uint64_t value = offset_basis;

  constexpr fnv1a() = default;
  constexpr explicit fnv1a(std::uint64_t start) : value(start) {}

  constexpr fnv1a& byte(unsigned char b) {
    value = (value ^ b) * prime;
    return *this;
  }
  fnv1a& bytes(const void* data, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) byte(static_cast<const unsigned char*>(data)[i]);
    return *this;
  }
  constexpr fnv1a& chars(std::string_view s) {  // the characters only
    for (char c : s) byte(static_cast<unsigned char>(c));
    return *this;
  }
  constexpr fnv1a& text(std::string_view s) {  // the characters and a terminator: "ab"+"c" differs from "a"+"bc"
    return chars(s).byte(0);
  }
  // An integer's bytes, least significant first, whatever the machine's byte order.
  template <class T>
    requires(std::is_integral_v<T> && !std::is_same_v<T, bool>) || std::is_enum_v<T>
  constexpr fnv1a& integer(T v) {
    using I = typename std::conditional_t<std::is_enum_v<T>, std::underlying_type<T>, std::type_identity<T>>::type;
    using U = std::make_unsigned_t<I>;
    const auto u = static_cast<U>(v);
    for (std::size_t b = 0; b < sizeof(U); ++b) byte(static_cast<unsigned char>(u >> (8 * b)));
    return *this;
  }
  constexpr fnv1a& integer(bool v) { return byte(v ? 1 : 0); }
  // A floating-point value's bit pattern (so 0.0 and -0.0 differ, as they may in what they produce).
  constexpr fnv1a& floating(float v) { return integer(std::bit_cast<std::uint32_t>(v)); }
  constexpr fnv1a& floating(double v) { return integer(std::bit_cast<std::uint64_t>(v)); }
};

// The published FNV-1a 64 test vectors (http://www.isthe.com/chongo/tech/comp/fnv/).
static_assert(fnv1a{fnv1a::published_offset_basis}.chars("").value == 0xcbf29ce484222325ull);
static_assert(fnv1a{fnv1a::published_offset_basis}.chars("a").value == 0xaf63dc4c8601ec8cull);
static_assert(fnv1a{fnv1a::published_offset_basis}.chars("foobar").value == 0x85944171f73967e8ull);

}  // namespace pq
