// pq/core/pack.hpp: the bit layouts compressed-tensors stores codes in: FP4 nibbles in bytes, and dense
// b-bit streams in int32 words along a row (weights) or down the columns (zero points).
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <vector>

#include <pq/config.hpp>
#include <pq/error.hpp>

namespace pq {

// Codes that cannot be packed as asked (an odd count of nibbles).
struct pack_error : pq::error {
  using pq::error::error;
};

// FP4: element 2j in the low nibble, element 2j+1 in the high nibble of byte j. `codes` is row-major
// [rows, cols] with cols even; the result is [rows, cols/2].
inline std::vector<std::uint8_t> pack_nibbles(std::span<const std::uint8_t> codes) {
  if (codes.size() % 2) throw pack_error("pack_nibbles: odd number of codes");
  std::vector<std::uint8_t> out(codes.size() / 2);
  for (std::size_t j = 0; j < out.size(); ++j)
    out[j] = static_cast<std::uint8_t>((codes[2 * j] & 0xFu) | ((codes[2 * j + 1] & 0xFu) << 4));
  return out;
}

inline std::vector<std::uint8_t> unpack_nibbles(std::span<const std::uint8_t> bytes) {
  std::vector<std::uint8_t> codes(bytes.size() * 2);
  for (std::size_t j = 0; j < bytes.size(); ++j) {
    codes[2 * j] = bytes[j] & 0xFu;
    codes[2 * j + 1] = static_cast<std::uint8_t>(bytes[j] >> 4);
  }
  return codes;
}

// Words per row of a dense b-bit stream of n codes: ceil(n*b/32).
constexpr index_t packed_words(index_t n, int bits) { return (n * bits + 31) / 32; }

// Each row of `codes` ([rows, cols], unsigned b-bit values) as a bit stream: element i occupies bits
// [i*b, i*b+b) and word w holds bits [32w, 32w+32). Result [rows, ceil(cols*b/32)] int32 bit patterns.
inline std::vector<std::int32_t> pack_int32_rows(std::span<const std::uint8_t> codes, index_t rows, index_t cols,
                                                 int bits) {
  const index_t words = packed_words(cols, bits);
  std::vector<std::uint32_t> out(static_cast<std::size_t>(rows * words), 0u);
  for (index_t r = 0; r < rows; ++r)
    for (index_t i = 0; i < cols; ++i) {
      const std::uint64_t v = codes[r * cols + i] & ((1u << bits) - 1u);
      const index_t bit = i * bits;
      const index_t w = bit / 32;
      const int off = static_cast<int>(bit % 32);
      out[r * words + w] |= static_cast<std::uint32_t>(v << off);
      if (off + bits > 32) out[r * words + w + 1] |= static_cast<std::uint32_t>(v >> (32 - off));
    }
  return {out.begin(), out.end()};
}

inline std::vector<std::uint8_t> unpack_int32_rows(std::span<const std::int32_t> words_in, index_t rows, index_t cols,
                                                   int bits) {
  const index_t words = packed_words(cols, bits);
  std::vector<std::uint8_t> codes(static_cast<std::size_t>(rows * cols));
  for (index_t r = 0; r < rows; ++r)
    for (index_t i = 0; i < cols; ++i) {
      const index_t bit = i * bits;
      const index_t w = bit / 32;
      const int off = static_cast<int>(bit % 32);
      std::uint64_t v = static_cast<std::uint32_t>(words_in[r * words + w]) >> off;
      if (off + bits > 32) v |= static_cast<std::uint64_t>(static_cast<std::uint32_t>(words_in[r * words + w + 1]))
                                << (32 - off);
      codes[r * cols + i] = static_cast<std::uint8_t>(v & ((1u << bits) - 1u));
    }
  return codes;
}

// Zero points ([rows, cols] unsigned b-bit) packed down the rows: transpose, pack each row, transpose
// back. Result [ceil(rows*b/32), cols].
inline std::vector<std::int32_t> pack_int32_columns(std::span<const std::uint8_t> codes, index_t rows, index_t cols,
                                                    int bits) {
  std::vector<std::uint8_t> t(codes.size());
  for (index_t r = 0; r < rows; ++r)
    for (index_t c = 0; c < cols; ++c) t[c * rows + r] = codes[r * cols + c];
  const auto packed_t = pack_int32_rows(t, cols, rows, bits);  // [cols, words]
  const index_t words = packed_words(rows, bits);
  std::vector<std::int32_t> out(static_cast<std::size_t>(words * cols));
  for (index_t c = 0; c < cols; ++c)
    for (index_t w = 0; w < words; ++w) out[w * cols + c] = packed_t[c * words + w];
  return out;
}

inline std::vector<std::uint8_t> unpack_int32_columns(std::span<const std::int32_t> packed, index_t rows, index_t cols,
                                                      int bits) {
  const index_t words = packed_words(rows, bits);
  std::vector<std::int32_t> t(static_cast<std::size_t>(cols * words));
  for (index_t w = 0; w < words; ++w)
    for (index_t c = 0; c < cols; ++c) t[c * words + w] = packed[w * cols + c];
  const auto codes_t = unpack_int32_rows(t, cols, rows, bits);  // [cols, rows]
  std::vector<std::uint8_t> out(static_cast<std::size_t>(rows * cols));
  for (index_t r = 0; r < rows; ++r)
    for (index_t c = 0; c < cols; ++c) out[r * cols + c] = codes_t[c * rows + r];
  return out;
}

}  // namespace pq
