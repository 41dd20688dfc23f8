// UTF-8 validation (with the byte offset of the first bad byte) and code point iteration.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "pq/text/error.hpp"

namespace pq::text {

// One decoded code point and how many bytes it took.
struct code_point {
  char32_t value;
  std::size_t length;
};

// Decodes the code point starting at text[pos]; nullopt when the bytes there are not
// well-formed UTF-8 (RFC 3629: no overlongs, no surrogates, nothing above U+10FFFF).
inline std::optional<code_point> decode_utf8_at(std::string_view text, std::size_t pos) {
  auto byte = [&](std::size_t i) { return static_cast<unsigned char>(text[i]); };
  const unsigned char b0 = byte(pos);
  if (b0 < 0x80) return code_point{b0, 1};
  std::size_t length = 0;
  char32_t value = 0;
  char32_t min_value = 0;
  if ((b0 & 0xE0) == 0xC0) { length = 2; value = b0 & 0x1F; min_value = 0x80; }
  else if ((b0 & 0xF0) == 0xE0) { length = 3; value = b0 & 0x0F; min_value = 0x800; }
  else if ((b0 & 0xF8) == 0xF0) { length = 4; value = b0 & 0x07; min_value = 0x10000; }
  else return std::nullopt;
  if (pos + length > text.size()) return std::nullopt;
  for (std::size_t i = 1; i < length; ++i) {
    const unsigned char b = byte(pos + i);
    if ((b & 0xC0) != 0x80) return std::nullopt;
    value = (value << 6) | (b & 0x3F);
  }
  if (value < min_value || value > 0x10FFFF || (value >= 0xD800 && value <= 0xDFFF)) return std::nullopt;
  return code_point{value, length};
}

// Byte offset of the first byte that does not start a well-formed code point, if any.
inline std::optional<std::size_t> find_invalid_utf8(std::string_view text) {
  std::size_t pos = 0;
  while (pos < text.size()) {
    const auto cp = decode_utf8_at(text, pos);
    if (!cp) return pos;
    pos += cp->length;
  }
  return std::nullopt;
}

// Throws text_error "<source>: invalid UTF-8 at byte offset N" when text is not UTF-8.
inline void require_utf8(std::string_view text, std::string_view source) {
  if (const auto bad = find_invalid_utf8(text))
    throw text_error(std::string(source) + ": invalid UTF-8 at byte offset " + std::to_string(*bad));
}

inline void append_utf8(std::string& out, char32_t c) {
  if (c < 0x80) {
    out += static_cast<char>(c);
  } else if (c < 0x800) {
    out += static_cast<char>(0xC0 | (c >> 6));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else if (c < 0x10000) {
    out += static_cast<char>(0xE0 | (c >> 12));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (c >> 18));
    out += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  }
}

}  // namespace pq::text
