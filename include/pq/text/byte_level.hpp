// The GPT-2 byte-level alphabet: every byte is shown as one printable code point
// (bytes_to_unicode of openai/gpt-2 encoder.py, used by HF ByteLevel pre-tokenizer/decoder).
#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>

#include "pq/text/utf8.hpp"

namespace pq::text {

// Printable bytes stand for themselves; the others take U+0100, U+0101, ... in byte order.
inline const std::array<char32_t, 256>& byte_to_code_point_table() {
  static const std::array<char32_t, 256> table = [] {
    std::array<char32_t, 256> t{};
    auto printable = [](unsigned b) { return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174; };
    char32_t next = 256;
    for (unsigned b = 0; b < 256; ++b) t[b] = printable(b) ? char32_t(b) : next++;
    return t;
  }();
  return table;
}

// The byte a byte-level code point stands for; nullopt for code points outside the alphabet.
inline std::optional<unsigned char> code_point_to_byte(char32_t c) {
  static const std::array<int, 324> inverse = [] {
    std::array<int, 324> inv{};
    inv.fill(-1);
    const auto& t = byte_to_code_point_table();
    for (unsigned b = 0; b < 256; ++b) inv[t[b]] = static_cast<int>(b);
    return inv;
  }();
  if (c >= inverse.size() || inverse[c] < 0) return std::nullopt;
  return static_cast<unsigned char>(inverse[c]);
}

// Raw bytes -> their byte-level spelling (always valid UTF-8).
inline std::string to_byte_level(std::string_view bytes) {
  const auto& t = byte_to_code_point_table();
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char ch : bytes) append_utf8(out, t[static_cast<unsigned char>(ch)]);
  return out;
}

// Byte-level spelling -> raw bytes; nullopt when a code point is outside the alphabet.
inline std::optional<std::string> from_byte_level(std::string_view spelled) {
  std::string out;
  out.reserve(spelled.size());
  std::size_t pos = 0;
  while (pos < spelled.size()) {
    const auto cp = decode_utf8_at(spelled, pos);
    if (!cp) return std::nullopt;
    const auto byte = code_point_to_byte(cp->value);
    if (!byte) return std::nullopt;
    out += static_cast<char>(*byte);
    pos += cp->length;
  }
  return out;
}

}  // namespace pq::text
