// The normalizer and pre-tokenizer of a byte-level tokenizer.json: text -> words in the
// byte-level alphabet, ready for BPE (HF tokenizers ByteLevel, Split, Sequence).
#pragma once

#include <algorithm>
#include <cstdio>
#include <iterator>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "pq/text/byte_level.hpp"
#include "pq/text/detail/nfc_inert.hpp"
#include "pq/text/error.hpp"
#include "pq/text/regex.hpp"
#include "pq/text/utf8.hpp"

namespace pq::text {

// Unicode NFC is not implemented in full: pq accepts text that NFC leaves unchanged by
// construction (every code point in detail::nfc_inert_ranges: most of Unicode, including
// Latin, Greek, Cyrillic, CJK, Hangul syllables and emoji) and rejects text with a code point
// NFC might compose or reorder (combining marks, Hangul jamo, unassigned code points).
enum class normalizer { none, nfc };

inline normalizer parse_normalizer(const nlohmann::json& j, std::string_view source) {
  if (j.is_null()) return normalizer::none;
  const std::string type = j.value("type", std::string());
  if (type == "NFC") return normalizer::nfc;
  if (type == "Sequence") {
    normalizer result = normalizer::none;
    for (const auto& step : j.at("normalizers")) result = std::max(result, parse_normalizer(step, source));
    return result;
  }
  throw text_error(std::string(source) + ": normalizer '" + type + "' is not supported (pq supports none or NFC)");
}

inline bool is_nfc_inert(char32_t c) {
  const auto& ranges = detail::nfc_inert_ranges;
  const auto it = std::upper_bound(ranges.begin(), ranges.end(), c,
                                   [](char32_t value, const auto& range) { return value < range.first; });
  return it != ranges.begin() && c <= std::prev(it)->second;
}

// Checks that text is its own NFC (see above); throws text_error otherwise, giving the byte
// offset as base_offset + the offset within text.
inline void require_normalized(normalizer n, std::string_view text, std::size_t base_offset) {
  if (n == normalizer::none) return;
  std::size_t pos = 0;
  while (pos < text.size()) {
    const auto cp = decode_utf8_at(text, pos).value_or(code_point{0, 1});
    if (!is_nfc_inert(cp.value)) {
      char hex[16];
      std::snprintf(hex, sizeof hex, "U+%04X", static_cast<unsigned>(cp.value));
      throw text_error(std::string("text at byte offset ") + std::to_string(base_offset + pos) + " has code point " + hex +
                       ", which this tokenizer's NFC normalizer may change; pq implements NFC only for "
                       "text without combining marks, Hangul jamo or unassigned code points");
    }
    pos += cp.length;
  }
}

// Split{pattern, behavior: Isolated | Removed, invert: false}.
enum class split_behavior { isolated, removed };  // removed: the matches are dropped

struct split_step {
  std::shared_ptr<const regex> pattern;
  split_behavior behavior;
};

// ByteLevel{add_prefix_space, use_regex}: must be the last step; maps bytes to the alphabet.
struct byte_level_step {
  bool add_prefix_space;
  bool use_regex;
};

using pre_step = std::variant<split_step, byte_level_step>;

inline split_step parse_split(const nlohmann::json& j, const std::string& where) {
  if (j.value("invert", false)) throw text_error(where + ": Split with invert=true is not supported");
  const std::string behavior = j.value("behavior", std::string());
  if (behavior != "Isolated" && behavior != "Removed")
    throw text_error(where + ": Split behavior '" + behavior + "' is not supported (Isolated or Removed)");
  const auto& pattern = j.at("pattern");
  std::shared_ptr<const regex> re;
  if (pattern.contains("Regex")) re = std::make_shared<regex>(pattern["Regex"].get<std::string>());
  else if (pattern.contains("String"))
    re = std::make_shared<regex>(pattern["String"].get<std::string>(), regex::syntax::literal);
  else throw text_error(where + ": Split pattern is neither Regex nor String");
  return split_step{std::move(re), behavior == "Removed" ? split_behavior::removed : split_behavior::isolated};
}

inline void parse_pre_steps(const nlohmann::json& j, const std::string& where, std::vector<pre_step>& steps) {
  const std::string type = j.value("type", std::string());
  if (type == "Sequence") {
    for (const auto& step : j.at("pretokenizers")) parse_pre_steps(step, where, steps);
  } else if (type == "Split") {
    steps.push_back(parse_split(j, where));
  } else if (type == "ByteLevel") {
    steps.push_back(byte_level_step{j.value("add_prefix_space", false), j.value("use_regex", true)});
  } else {
    throw text_error(where + ": pre-tokenizer '" + type + "' is not supported (pq supports ByteLevel, Split, Sequence)");
  }
}

class pre_tokenizer {
 public:
  static pre_tokenizer from_json(const nlohmann::json& j, std::string_view source) {
    const std::string where = std::string(source) + ": pre_tokenizer";
    if (j.is_null()) throw text_error(where + " is missing: pq supports byte-level BPE tokenizers only");
    pre_tokenizer p;
    parse_pre_steps(j, where, p.steps_);
    const bool byte_level_last = !p.steps_.empty() && std::holds_alternative<byte_level_step>(p.steps_.back());
    const auto byte_levels = std::count_if(p.steps_.begin(), p.steps_.end(),
                                           [](const pre_step& s) { return std::holds_alternative<byte_level_step>(s); });
    if (!byte_level_last || byte_levels != 1)
      throw text_error(where + " must end with exactly one ByteLevel step: pq supports byte-level BPE tokenizers only");
    if (std::get<byte_level_step>(p.steps_.back()).use_regex) p.gpt2_ = std::make_shared<regex>(gpt2_split_pattern);
    return p;
  }

  // Calls emit(word) for each word of text (valid UTF-8, no added tokens), in order, in the
  // byte-level alphabet; nothing but the current word is materialized.
  template <class Emit>
  void for_each_word(std::string_view text, Emit&& emit) const {
    apply(0, text, emit);
  }

  std::vector<std::string> words(std::string_view text) const {
    std::vector<std::string> out;
    for_each_word(text, [&](std::string&& w) { out.push_back(std::move(w)); });
    return out;
  }

 private:
  template <class Emit>
  void apply(std::size_t step, std::string_view piece, Emit& emit) const {
    if (const auto* split = std::get_if<split_step>(&steps_[step])) {
      split->pattern->for_each_piece(piece, [&](const split_piece& p) {
        if (!(p.is_match && split->behavior == split_behavior::removed)) apply(step + 1, p.text, emit);
      });
      return;
    }
    // ByteLevel, the last step.
    std::string with_prefix;
    if (std::get<byte_level_step>(steps_[step]).add_prefix_space && !piece.starts_with(' ')) {
      with_prefix.reserve(piece.size() + 1);
      with_prefix.push_back(' ');
      with_prefix.append(piece);
      piece = with_prefix;
    }
    if (!gpt2_) {
      emit(to_byte_level(piece));
      return;
    }
    gpt2_->for_each_piece(piece, [&](const split_piece& p) { emit(to_byte_level(p.text)); });
  }

  std::vector<pre_step> steps_;
  std::shared_ptr<const regex> gpt2_;
};

}  // namespace pq::text
