// The added_tokens of tokenizer.json: found in raw text before pre-tokenization
// (leftmost, longest first), each becoming its id directly.
#pragma once

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "pq/text/bpe.hpp"
#include "pq/text/error.hpp"
#include "pq/text/regex.hpp"

namespace pq::text {

struct added_token {
  std::string content;
  std::int32_t id;
  bool special;
  bool lstrip;  // swallows the whitespace before it
  bool rstrip;  // swallows the whitespace after it
};

// A piece of input: either plain text for the pre-tokenizer, or one added token.
struct text_segment {
  std::string_view text;
  const added_token* token;  // nullptr for plain text
};

class added_vocabulary {
 public:
  static added_vocabulary from_json(const nlohmann::json& list, std::string_view source) {
    added_vocabulary v;
    for (const auto& t : list) {
      if (t.value("single_word", false))
        throw text_error(std::string(source) + ": added token '" + t.value("content", std::string()) +
                         "' has single_word=true, which pq does not support");
      v.tokens_.push_back(added_token{t.at("content").get<std::string>(), t.at("id").get<std::int32_t>(),
                                      t.value("special", false), t.value("lstrip", false), t.value("rstrip", false)});
      v.by_content_.emplace(v.tokens_.back().content, static_cast<std::int32_t>(v.tokens_.size() - 1));
      v.by_id_.emplace(v.tokens_.back().id, v.tokens_.size() - 1);
    }
    v.build_matcher();
    return v;
  }

  const added_token* find(std::string_view content) const {
    const auto it = by_content_.find(content);
    return it == by_content_.end() ? nullptr : &tokens_[static_cast<std::size_t>(it->second)];
  }

  const added_token* find(std::int32_t id) const {
    const auto it = by_id_.find(id);
    return it == by_id_.end() ? nullptr : &tokens_[it->second];
  }

  std::size_t id_bound() const {
    std::size_t bound = 0;
    for (const auto& t : tokens_) bound = std::max(bound, static_cast<std::size_t>(t.id) + 1);
    return bound;
  }

  // Cuts text at every added token; lstrip/rstrip tokens take the ASCII whitespace beside them.
  std::vector<text_segment> segment(std::string_view text) const {
    std::vector<text_segment> out;
    if (!matcher_) {
      if (!text.empty()) out.push_back({text, nullptr});
      return out;
    }
    for (const auto& piece : matcher_->split(text)) out.push_back({piece.text, piece.is_match ? find(piece.text) : nullptr});
    strip_around_tokens(out);
    std::erase_if(out, [](const text_segment& s) { return !s.token && s.text.empty(); });
    return out;
  }

 private:
  static bool is_space(char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; }

  static void strip_around_tokens(std::vector<text_segment>& segments) {
    for (std::size_t i = 0; i < segments.size(); ++i) {
      const added_token* t = segments[i].token;
      if (!t) continue;
      if (t->lstrip && i > 0 && !segments[i - 1].token) {
        auto& before = segments[i - 1].text;
        while (!before.empty() && is_space(before.back())) before.remove_suffix(1);
      }
      if (t->rstrip && i + 1 < segments.size() && !segments[i + 1].token) {
        auto& after = segments[i + 1].text;
        while (!after.empty() && is_space(after.front())) after.remove_prefix(1);
      }
    }
  }

  // One PCRE2 alternation of the escaped contents, longest first, so leftmost-first is
  // leftmost-longest.
  void build_matcher() {
    std::vector<std::string> contents;
    for (const auto& t : tokens_)
      if (!t.content.empty()) contents.push_back(t.content);
    if (contents.empty()) return;
    std::sort(contents.begin(), contents.end(), [](const auto& a, const auto& b) { return a.size() > b.size(); });
    std::string pattern;
    for (const auto& c : contents) {
      if (!pattern.empty()) pattern += '|';
      for (char ch : c) {
        const auto u = static_cast<unsigned char>(ch);
        if (u < 0x80 && !std::isalnum(u)) pattern += '\\';
        pattern += ch;
      }
    }
    matcher_ = std::make_shared<regex>(pattern);
  }

  std::vector<added_token> tokens_;
  token_map by_content_;
  std::unordered_map<std::int32_t, std::size_t> by_id_;
  std::shared_ptr<const regex> matcher_;
};

}  // namespace pq::text
