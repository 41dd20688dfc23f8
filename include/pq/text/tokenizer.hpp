// A Hugging Face tokenizer.json for byte-level BPE models (GPT-2, Llama-3, Qwen2 style):
// encode text to ids exactly as the tokenizers library does, and decode ids to bytes.
#pragma once

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "pq/text/added_tokens.hpp"
#include "pq/text/bpe.hpp"
#include "pq/text/byte_level.hpp"
#include "pq/text/error.hpp"
#include "pq/text/pre_tokenizer.hpp"
#include "pq/text/utf8.hpp"

namespace pq::text {

// Whether encode applies the post-processor's template (e.g. Llama-3's <|begin_of_text|>).
enum class special_tokens { omit, add };
// Whether decode writes added tokens marked special (e.g. <|endoftext|>) or drops them.
enum class decoded_specials { keep, skip };

// The single-sequence template of a TemplateProcessing post-processor: prefix, $A, suffix.
struct sequence_template {
  std::vector<std::int32_t> prefix;
  std::vector<std::int32_t> suffix;
};

namespace detail {

inline void parse_post_processor(const nlohmann::json& j, const std::string& where, sequence_template& out) {
  if (j.is_null()) return;
  const std::string type = j.value("type", std::string());
  if (type == "ByteLevel") return;  // only adjusts offsets
  if (type == "Sequence") {
    for (const auto& p : j.at("processors")) parse_post_processor(p, where, out);
    return;
  }
  if (type != "TemplateProcessing")
    throw text_error(where + ": post_processor '" + type + "' is not supported (ByteLevel, TemplateProcessing)");
  bool after_sequence = false;
  for (const auto& item : j.at("single")) {
    if (item.contains("Sequence")) {
      after_sequence = true;
      continue;
    }
    const std::string name = item.at("SpecialToken").at("id").get<std::string>();
    const auto& special = j.at("special_tokens");
    if (!special.contains(name)) throw text_error(where + ": template token '" + name + "' has no special_tokens entry");
    auto& side = after_sequence ? out.suffix : out.prefix;
    for (const auto& id : special[name].at("ids")) side.push_back(id.get<std::int32_t>());
  }
}

inline void require_byte_level_decoder(const nlohmann::json& j, const std::string& where) {
  const std::string type = j.is_null() ? std::string("none") : j.value("type", std::string());
  if (type == "ByteLevel") return;
  if (type == "Sequence") {
    for (const auto& d : j.at("decoders")) require_byte_level_decoder(d, where);
    return;
  }
  throw text_error(where + ": decoder '" + type + "' is not supported (pq decodes byte-level BPE only)");
}

}  // namespace detail

class tokenizer {
 public:
  // Parses a tokenizer.json document; source names it in error messages.
  static tokenizer from_json(const nlohmann::json& j, std::string_view source) {
    if (!j.is_object() || !j.contains("model")) throw text_error(std::string(source) + ": not a tokenizer.json (no \"model\")");
    tokenizer t;
    t.model_ = bpe_model::from_json(j["model"], source);
    t.normalizer_ = parse_normalizer(j.value("normalizer", nlohmann::json()), source);
    t.pre_ = pre_tokenizer::from_json(j.value("pre_tokenizer", nlohmann::json()), source);
    t.added_ = added_vocabulary::from_json(j.value("added_tokens", nlohmann::json::array()), source);
    detail::parse_post_processor(j.value("post_processor", nlohmann::json()), std::string(source) + ": post_processor",
                                 t.template_);
    detail::require_byte_level_decoder(j.value("decoder", nlohmann::json()), std::string(source) + ": decoder");
    t.check_template_ids(source);
    return t;
  }

  static tokenizer from_file(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw text_error(path.string() + ": cannot open tokenizer file");
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(in);
    } catch (const nlohmann::json::exception& e) {
      throw text_error(path.string() + ": not valid JSON: " + e.what());
    }
    try {
      return from_json(j, path.string());
    } catch (const nlohmann::json::exception& e) {
      throw text_error(path.string() + ": unexpected tokenizer.json structure: " + e.what());
    }
  }

  // Ids of text, which must be valid UTF-8 (else text_error naming the byte offset).
  std::vector<std::int32_t> encode(std::string_view text, special_tokens specials = special_tokens::omit) const {
    require_utf8(text, "text to encode");
    std::vector<std::int32_t> ids;
    if (specials == special_tokens::add) ids = template_.prefix;
    std::unordered_map<std::string, std::vector<std::int32_t>> cache;
    for (const auto& segment : added_.segment(text)) {
      if (segment.token) {
        ids.push_back(segment.token->id);
        continue;
      }
      require_normalized(normalizer_, segment.text, static_cast<std::size_t>(segment.text.data() - text.data()));
      pre_.for_each_word(segment.text, [&](const std::string& word) { encode_word(word, cache, ids); });
    }
    if (specials == special_tokens::add) ids.insert(ids.end(), template_.suffix.begin(), template_.suffix.end());
    return ids;
  }

  // The bytes ids stand for (not necessarily valid UTF-8 if ids cut a character).
  std::string decode(std::span<const std::int32_t> ids, decoded_specials specials = decoded_specials::keep) const {
    std::string out;
    for (const std::int32_t id : ids) {
      const added_token* added = added_.find(id);
      if (added && added->special && specials == decoded_specials::skip) continue;
      const std::string* spelled = added ? &added->content : model_.token(id);
      if (!spelled)
        throw text_error("cannot decode id " + std::to_string(id) + ": not in the tokenizer's vocabulary of " +
                         std::to_string(vocab_size()) + " ids");
      // As tokenizers' ByteLevel decoder: a token outside the byte alphabet is written as is.
      out += from_byte_level(*spelled).value_or(*spelled);
    }
    return out;
  }

  // One more than the largest id the tokenizer can produce.
  std::size_t vocab_size() const { return std::max(model_.id_bound(), added_.id_bound()); }

  // The id of a vocabulary or added token spelled exactly so (byte-level spelling for BPE tokens).
  std::optional<std::int32_t> token_id(std::string_view token) const {
    if (const added_token* t = added_.find(token)) return t->id;
    return model_.find(token);
  }

  // Throws unless every id this tokenizer produces indexes a model with model_vocab_size rows.
  void require_fits(std::size_t model_vocab_size, std::string_view model_source) const {
    if (vocab_size() > model_vocab_size)
      throw text_error(std::string(model_source) + ": vocab_size " + std::to_string(model_vocab_size) +
                       " is smaller than the tokenizer's " + std::to_string(vocab_size()) +
                       " ids: tokenizer.json does not belong to this model");
  }

 private:
  void encode_word(const std::string& word, std::unordered_map<std::string, std::vector<std::int32_t>>& cache,
                   std::vector<std::int32_t>& ids) const {
    auto [it, inserted] = cache.try_emplace(word);
    if (inserted) model_.encode_word(word, it->second);
    ids.insert(ids.end(), it->second.begin(), it->second.end());
  }

  void check_template_ids(std::string_view source) const {
    for (const auto* side : {&template_.prefix, &template_.suffix})
      for (const std::int32_t id : *side)
        if (!added_.find(id) && !model_.token(id))
          throw text_error(std::string(source) + ": post_processor adds id " + std::to_string(id) +
                           ", which is not in the vocabulary");
  }

  bpe_model model_;
  normalizer normalizer_ = normalizer::none;
  pre_tokenizer pre_;
  added_vocabulary added_;
  sequence_template template_;
};

// tokenizer.json of a Hugging Face model directory, checked against config.json's vocab_size
// (top level, or text_config for multimodal configs).
inline tokenizer load_model_tokenizer(const std::filesystem::path& model_dir) {
  tokenizer t = tokenizer::from_file(model_dir / "tokenizer.json");
  const auto config_path = model_dir / "config.json";
  std::ifstream in(config_path, std::ios::binary);
  if (!in) throw text_error(config_path.string() + ": cannot open model config");
  nlohmann::json config;
  try {
    config = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw text_error(config_path.string() + ": not valid JSON: " + e.what());
  }
  const nlohmann::json* holder = &config;
  if (!config.contains("vocab_size") && config.contains("text_config")) holder = &config["text_config"];
  if (!holder->contains("vocab_size") || !(*holder)["vocab_size"].is_number_unsigned())
    throw text_error(config_path.string() + ": has no vocab_size");
  t.require_fits((*holder)["vocab_size"].get<std::size_t>(), config_path.string());
  return t;
}

}  // namespace pq::text
