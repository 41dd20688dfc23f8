// A compiled PCRE2 pattern in UTF + UCP mode (Unicode \p{L}, \s, ...), used to split text
// the way the tokenizers library's Split / ByteLevel pre-tokenizers do.
#pragma once

#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH 8
#endif
#include <pcre2.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "pq/text/error.hpp"
#include "pq/text/utf8.hpp"

namespace pq::text {

// The GPT-2 pattern the ByteLevel pre-tokenizer applies when its use_regex is true.
inline constexpr std::string_view gpt2_split_pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// One piece of a split: either a match of the pattern or the text between two matches.
struct split_piece {
  std::string_view text;
  bool is_match;
};

// tokenizers' regex engines read \s as the Unicode White_Space property; PCRE2's \s also
// takes U+180E. Spell \s and \S as that property so both engines split alike.
inline std::string with_unicode_white_space(std::string_view pattern) {
  std::string out;
  out.reserve(pattern.size());
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] != '\\' || i + 1 == pattern.size()) {
      out += pattern[i];
      continue;
    }
    const char next = pattern[++i];
    if (next == 's') out += "\\p{White_Space}";
    else if (next == 'S') out += "\\P{White_Space}";
    else (out += '\\') += next;
  }
  return out;
}

class regex {
 public:
  enum class syntax { pattern, literal };

  explicit regex(std::string_view source_pattern, syntax kind = syntax::pattern) {
    const std::string pattern =
        kind == syntax::pattern ? with_unicode_white_space(source_pattern) : std::string(source_pattern);
    int error_code = 0;
    PCRE2_SIZE error_offset = 0;
    const uint32_t options = PCRE2_UTF | PCRE2_UCP | (kind == syntax::literal ? PCRE2_LITERAL : 0u);
    pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), options,
                                     &error_code, &error_offset, nullptr);
    if (!code) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(error_code, message, sizeof message);
      throw text_error("regex '" + std::string(source_pattern) + "' does not compile at offset " +
                       std::to_string(error_offset) + ": " + reinterpret_cast<const char*>(message));
    }
    code_.reset(code);
    pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // interpreter fallback when JIT is unavailable
  }

  // Calls visit(split_piece) for all matches and the gaps between them, in order, covering
  // text exactly (leftmost-first, non-overlapping; an empty match yields no piece). text must
  // be valid UTF-8.
  template <class Visit>
  void for_each_piece(std::string_view text, Visit&& visit) const {
    std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> match(
        pcre2_match_data_create_from_pattern(code_.get(), nullptr), &pcre2_match_data_free);
    std::size_t gap_start = 0;
    std::size_t search = 0;
    while (search <= text.size()) {
      const int rc = pcre2_match(code_.get(), reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), search,
                                 PCRE2_NO_UTF_CHECK, match.get(), nullptr);
      if (rc == PCRE2_ERROR_NOMATCH) break;
      if (rc < 0) throw text_error("regex match failed with PCRE2 error " + std::to_string(rc));
      const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(match.get());
      const std::size_t begin = ovector[0];
      const std::size_t end = ovector[1];
      if (end == begin) {  // empty match: step over one code point
        if (begin >= text.size()) break;
        search = begin + decode_utf8_at(text, begin).value_or(code_point{0, 1}).length;
        continue;
      }
      if (begin > gap_start) visit(split_piece{text.substr(gap_start, begin - gap_start), false});
      visit(split_piece{text.substr(begin, end - begin), true});
      gap_start = search = end;
    }
    if (gap_start < text.size()) visit(split_piece{text.substr(gap_start), false});
  }

  std::vector<split_piece> split(std::string_view text) const {
    std::vector<split_piece> pieces;
    for_each_piece(text, [&](const split_piece& p) { pieces.push_back(p); });
    return pieces;
  }

 private:
  struct code_deleter {
    void operator()(pcre2_code* code) const { pcre2_code_free(code); }
  };
  std::unique_ptr<pcre2_code, code_deleter> code_;
};

}  // namespace pq::text
