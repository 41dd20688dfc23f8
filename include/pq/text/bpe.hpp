// The BPE model of a tokenizer.json: vocabulary, ranked merges, and the merge loop for one word.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <queue>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "pq/text/error.hpp"
#include "pq/text/utf8.hpp"

namespace pq::text {

struct string_hash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
using token_map = std::unordered_map<std::string, std::int32_t, string_hash, std::equal_to<>>;

class bpe_model {
 public:
  // Reads the "model" object of tokenizer.json; source names the file in error messages.
  static bpe_model from_json(const nlohmann::json& model, std::string_view source) {
    const std::string where = std::string(source) + ": model";
    const std::string type = model.value("type", std::string("BPE"));
    if (type != "BPE")
      throw text_error(where + " type '" + type + "' is not supported (pq supports byte-level BPE only)");
    reject_option(model, "byte_fallback", where);
    reject_option(model, "continuing_subword_prefix", where);
    reject_option(model, "end_of_word_suffix", where);
    if (model.contains("dropout") && !model["dropout"].is_null() && model["dropout"].get<double>() > 0.0)
      throw text_error(where + ".dropout is set: BPE dropout (random merges) is not supported");
    if (!model.contains("vocab") || !model["vocab"].is_object())
      throw text_error(where + ".vocab is missing or not an object");

    bpe_model bpe;
    for (const auto& [token, id] : model["vocab"].items()) bpe.add_token(token, id.get<std::int32_t>(), where);
    bpe.read_merges(model.value("merges", nlohmann::json::array()), where);
    bpe.ignore_merges_ = model.value("ignore_merges", false);
    if (model.contains("unk_token") && model["unk_token"].is_string()) {
      const auto unk = bpe.find(model["unk_token"].get<std::string>());
      if (!unk) throw text_error(where + ".unk_token is not in the vocabulary");
      bpe.unk_ = unk;
    }
    return bpe;
  }

  std::optional<std::int32_t> find(std::string_view token) const {
    const auto it = vocab_.find(token);
    if (it == vocab_.end()) return std::nullopt;
    return it->second;
  }

  // The token spelled by id, or nullptr when the vocabulary has no such id.
  const std::string* token(std::int32_t id) const {
    if (id < 0 || static_cast<std::size_t>(id) >= tokens_.size() || !has_id_[static_cast<std::size_t>(id)])
      return nullptr;
    return &tokens_[static_cast<std::size_t>(id)];
  }

  std::size_t id_bound() const { return tokens_.size(); }

  // Appends the ids of one pre-tokenized word (already in the byte-level alphabet).
  void encode_word(std::string_view word, std::vector<std::int32_t>& out) const {
    if (ignore_merges_) {
      if (const auto whole = find(word)) {
        out.push_back(*whole);
        return;
      }
    }
    std::vector<std::int32_t> symbols = initial_symbols(word);
    merge_all(symbols);
    out.insert(out.end(), symbols.begin(), symbols.end());
  }

 private:
  struct merge {
    std::uint32_t rank;
    std::int32_t merged;
  };

  static std::uint64_t pair_key(std::int32_t left, std::int32_t right) {
    return (std::uint64_t(std::uint32_t(left)) << 32) | std::uint32_t(right);
  }

  static void reject_option(const nlohmann::json& model, const char* key, const std::string& where) {
    if (!model.contains(key)) return;
    const auto& v = model[key];
    const bool set = v.is_boolean() ? v.get<bool>() : v.is_string() ? !v.get<std::string>().empty() : !v.is_null();
    if (set) throw text_error(where + "." + key + " is set: this BPE variant is not supported");
  }

  void add_token(const std::string& token, std::int32_t id, const std::string& where) {
    if (id < 0) throw text_error(where + ".vocab has a negative id for '" + token + "'");
    const auto index = static_cast<std::size_t>(id);
    if (index >= tokens_.size()) {
      tokens_.resize(index + 1);
      has_id_.resize(index + 1, false);
    }
    if (has_id_[index]) throw text_error(where + ".vocab gives id " + std::to_string(id) + " to two tokens");
    tokens_[index] = token;
    has_id_[index] = true;
    vocab_.emplace(token, id);
  }

  void read_merges(const nlohmann::json& merges, const std::string& where) {
    std::uint32_t rank = 0;
    for (const auto& entry : merges) {
      std::string left, right;
      if (entry.is_array() && entry.size() == 2) {
        left = entry[0].get<std::string>();
        right = entry[1].get<std::string>();
      } else if (entry.is_string()) {
        const std::string s = entry.get<std::string>();
        const auto space = s.find(' ');
        if (space == std::string::npos) throw text_error(where + ".merges entry '" + s + "' is not 'left right'");
        left = s.substr(0, space);
        right = s.substr(space + 1);
      } else {
        throw text_error(where + ".merges entry " + std::to_string(rank) + " is neither a pair nor a string");
      }
      const auto l = find(left), r = find(right), m = find(left + right);
      if (!l || !r || !m)
        throw text_error(where + ".merges entry " + std::to_string(rank) + " ('" + left + "' '" + right +
                         "') uses a token missing from the vocabulary");
      merges_.try_emplace(pair_key(*l, *r), merge{rank, *m});  // the first (lowest) rank wins
      ++rank;
    }
  }

  std::vector<std::int32_t> initial_symbols(std::string_view word) const {
    std::vector<std::int32_t> symbols;
    std::size_t pos = 0;
    while (pos < word.size()) {
      const std::size_t length = decode_utf8_at(word, pos).value_or(code_point{0, 1}).length;
      const auto id = find(word.substr(pos, length));
      if (id) symbols.push_back(*id);
      else if (unk_) symbols.push_back(*unk_);
      else throw text_error("tokenizer vocabulary has no token for '" + std::string(word.substr(pos, length)) + "'");
      pos += length;
    }
    return symbols;
  }

  // Applies merges lowest rank first, leftmost first among equal ranks (the order of
  // tokenizers' Word::merge_all), in O(n log n) over a linked list of symbols.
  void merge_all(std::vector<std::int32_t>& ids) const {
    struct symbol {
      std::int32_t id;
      std::ptrdiff_t prev;
      std::ptrdiff_t next;
      bool alive;
    };
    struct candidate {
      std::uint32_t rank;
      std::ptrdiff_t pos;
      bool operator>(const candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
    };
    const auto n = static_cast<std::ptrdiff_t>(ids.size());
    std::vector<symbol> symbols;
    symbols.reserve(ids.size());
    for (std::ptrdiff_t i = 0; i < n; ++i) symbols.push_back({ids[static_cast<std::size_t>(i)], i - 1, i + 1 < n ? i + 1 : -1, true});
    std::priority_queue<candidate, std::vector<candidate>, std::greater<>> queue;
    const auto push = [&](std::ptrdiff_t pos) {
      const auto& left = symbols[static_cast<std::size_t>(pos)];
      if (left.next < 0) return;
      const auto it = merges_.find(pair_key(left.id, symbols[static_cast<std::size_t>(left.next)].id));
      if (it != merges_.end()) queue.push({it->second.rank, pos});
    };
    for (std::ptrdiff_t i = 0; i + 1 < n; ++i) push(i);
    while (!queue.empty()) {
      const candidate top = queue.top();
      queue.pop();
      auto& left = symbols[static_cast<std::size_t>(top.pos)];
      if (!left.alive || left.next < 0) continue;
      auto& right = symbols[static_cast<std::size_t>(left.next)];
      const auto it = merges_.find(pair_key(left.id, right.id));
      if (it == merges_.end() || it->second.rank != top.rank) continue;  // stale entry
      left.id = it->second.merged;
      right.alive = false;
      left.next = right.next;
      if (right.next >= 0) symbols[static_cast<std::size_t>(right.next)].prev = top.pos;
      if (left.prev >= 0) push(left.prev);
      push(top.pos);
    }
    ids.clear();
    for (std::ptrdiff_t i = n > 0 ? 0 : -1; i >= 0; i = symbols[static_cast<std::size_t>(i)].next)
      ids.push_back(symbols[static_cast<std::size_t>(i)].id);
  }

  token_map vocab_;
  std::vector<std::string> tokens_;
  std::vector<bool> has_id_;
  std::unordered_map<std::uint64_t, merge> merges_;
  std::optional<std::int32_t> unk_;
  bool ignore_merges_ = false;
};

}  // namespace pq::text
