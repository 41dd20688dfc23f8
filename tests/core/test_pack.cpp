// Bit layouts against the spec's byte examples, and round trips.
#include <doctest/doctest.h>

#include <random>
#include <vector>

#include <pq/core/minifloat.hpp>
#include <pq/core/pack.hpp>

using namespace pq;

TEST_CASE("FP4 nibbles: [1.0, -0.5] packs to 0x92 (even element in the low nibble)") {
  const std::vector<std::uint8_t> codes{static_cast<std::uint8_t>(e2m1::encode(1.0f)),
                                        static_cast<std::uint8_t>(e2m1::encode(-0.5f))};
  CHECK(codes[0] == 0x2);
  CHECK(codes[1] == 0x9);
  CHECK(pack_nibbles(codes) == std::vector<std::uint8_t>{0x92});
}

TEST_CASE("int4 into int32: q = -8..-1 gives word 0x76543210, bytes 10 32 54 76") {
  std::vector<std::uint8_t> u(8);
  for (int q = -8; q <= -1; ++q) u[q + 8] = static_cast<std::uint8_t>(q + 8);
  const auto w = pack_int32_rows(u, 1, 8, 4);
  REQUIRE(w.size() == 1);
  CHECK(static_cast<std::uint32_t>(w[0]) == 0x76543210u);
  const auto* b = reinterpret_cast<const std::uint8_t*>(w.data());
  CHECK(b[0] == 0x10);
  CHECK(b[3] == 0x76);
}

TEST_CASE("int8 into int32: the little-endian byte stream is the u8 sequence, rows padded") {
  std::vector<std::uint8_t> u{1, 2, 3, 4, 5, 6};  // one row of 6 -> 2 words
  const auto w = pack_int32_rows(u, 1, 6, 8);
  REQUIRE(w.size() == 2);
  CHECK(static_cast<std::uint32_t>(w[0]) == 0x04030201u);
  CHECK(static_cast<std::uint32_t>(w[1]) == 0x00000605u);
}

TEST_CASE("zero points pack down the rows: word (r, g) holds rows 8r..8r+7, row 8r+j in bits 4j") {
  const index_t rows = 16, cols = 3;
  std::vector<std::uint8_t> z(rows * cols);
  for (index_t r = 0; r < rows; ++r)
    for (index_t c = 0; c < cols; ++c) z[r * cols + c] = static_cast<std::uint8_t>((r + 3 * c) & 15);
  const auto w = pack_int32_columns(z, rows, cols, 4);
  REQUIRE(w.size() == 2 * cols);
  for (index_t r = 0; r < rows; ++r)
    for (index_t c = 0; c < cols; ++c)
      CHECK(((static_cast<std::uint32_t>(w[(r / 8) * cols + c]) >> (4 * (r % 8))) & 15u) == z[r * cols + c]);
  CHECK(unpack_int32_columns(w, rows, cols, 4) == z);
}

TEST_CASE("dense streams round-trip for every width, across word boundaries") {
  std::mt19937 rng(5);
  for (int bits = 2; bits <= 8; ++bits) {
    const index_t rows = 3, cols = 37;
    std::vector<std::uint8_t> u(rows * cols);
    for (auto& x : u) x = static_cast<std::uint8_t>(rng() & ((1u << bits) - 1u));
    const auto w = pack_int32_rows(u, rows, cols, bits);
    CHECK(static_cast<index_t>(w.size()) == rows * packed_words(cols, bits));
    CHECK(unpack_int32_rows(w, rows, cols, bits) == u);
  }
  std::vector<std::uint8_t> nib(64);
  for (auto& x : nib) x = static_cast<std::uint8_t>(rng() & 15u);
  CHECK(unpack_nibbles(pack_nibbles(nib)) == nib);
}
