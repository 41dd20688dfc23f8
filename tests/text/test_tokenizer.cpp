// pq::text::tokenizer against ids from the Hugging Face tokenizers library.
#include <doctest/doctest.h>

#include <filesystem>
#include <string>
#include <vector>

#include <pq/text/tokenizer.hpp>

namespace fs = std::filesystem;
using pq::text::tokenizer;
using ids = std::vector<std::int32_t>;

namespace {

const fs::path tiny_llama = fs::path(PQ_MODELS_DIR) / "tiny-llama-code";
// A Llama-3-style tokenizer.json (Split with the Llama-3 regex + ByteLevel(use_regex=false),
// ignore_merges, NFC, TemplateProcessing "<|begin_of_text|> $A") trained with tokenizers
// 0.23.3 on 100 Python files to 320 tokens: tests/text/data/llama3_style_tokenizer.json.
const fs::path llama3_style = fs::path(PQ_SOURCE_DIR) / "tests/text/data/llama3_style_tokenizer.json";

std::string tokenizer_error_of(auto&& f) {
  try {
    f();
  } catch (const pq::text::text_error& e) {
    return e.what();
  }
  return "no error";
}

struct case_ {
  std::string text;
  ids expected;
};

}  // namespace

TEST_CASE("tiny-llama-code tokenizer.json encodes as tokenizers 0.23.3 does") {
  if (!fs::exists(tiny_llama / "tokenizer.json")) {
    MESSAGE("skipped: " << tiny_llama << " is absent");
    return;
  }
  const auto tok = tokenizer::from_file(tiny_llama / "tokenizer.json");
  // Expected ids: Tokenizer.from_file(".../tiny-llama-code/tokenizer.json").encode(text).ids
  // with the tokenizers 0.23.3 Python package.
  const std::vector<case_> cases = {
      {"def add(a, b):\n    return a + b\n", {328, 1407, 8, 65, 12, 307, 327, 267, 373, 279, 437, 307, 199}},
      {"x = 1234567 + 3.14159  # digits", {88, 273, 2095, 1026, 6409, 437, 491, 14, 904, 7305, 221, 317, 435, 7523}},
      {"    \t  \n\n\n   trailing spaces   ", {258, 198, 257, 441, 3514, 1217, 2703, 6895, 490, 259}},
      {"h\u00e9llo w\u00f6rld, na\u00efve caf\u00e9 \u2014 \u4e2d\u6587 \U0001F600",
       {72, 128, 103, 76, 309, 326, 128, 115, 82, 2075, 12, 7079, 128, 108, 390, 1244,
        70, 128, 103, 8146, 243, 221, 161, 117, 256, 163, 245, 230, 221, 838, 247, 223}},
      {"I'm sure they'll say it's fine", {41, 7, 77, 3398, 2624, 7, 1356, 295, 964, 682, 1271, 285, 533}},
      {"<|endoftext|>import os<|endoftext|>\n<|endoftext|>", {0, 839, 1530, 0, 199, 0}},
      {"a<|endoftext|>b", {65, 0, 66}},
  };
  for (const auto& c : cases) {
    CAPTURE(c.text);
    const auto got = tok.encode(c.text);
    CHECK(got == c.expected);
    CHECK(tok.decode(got) == c.text);
  }
  CHECK(tok.encode("").empty());
  CHECK(tok.vocab_size() == 8192);
  CHECK(tok.decode(ids{0, 65}, pq::text::decoded_specials::skip) == "a");
}

TEST_CASE("Llama-3-style tokenizer: Split regex, ignore_merges, NFC, template, added tokens") {
  const auto tok = tokenizer::from_file(llama3_style);
  // Expected ids: tokenizers 0.23.3, encode(text, add_special_tokens=False).ids.
  const std::vector<case_> cases = {
      {"def add(a, b):\n    return a + b\n",
       {275, 71, 311, 69, 69, 9, 66, 13, 222, 67, 10, 277, 260, 297, 85, 296, 79, 311, 222, 12, 222, 67, 200}},
      {"x = 1234567", {89, 278, 222, 18, 19, 20, 21, 22, 23, 24}},
      {"  \n\n  end", {258, 200, 200, 222, 222, 273, 69}},
      {"I'm sure they'll say it's fine",
       {42, 8, 78, 222, 84, 86, 268, 274, 291, 90, 8, 77, 77, 222, 84, 66, 90, 283, 85, 8, 84, 298, 264, 70}},
      {"na\u00efve \u4e2d\u6587 \U0001F600 \u00c5\u03a9",
       {79, 66, 129, 109, 87, 70, 222, 162, 118, 257, 164, 246, 231, 222, 174, 255, 248, 224, 222, 129, 229, 140, 104}},
      {"<|end_of_text|>x<|begin_of_text|>", {1, 89, 0}},
  };
  for (const auto& c : cases) {
    CAPTURE(c.text);
    CHECK(tok.encode(c.text) == c.expected);
    CHECK(tok.decode(c.expected) == c.text);
  }
  // The post-processor template prepends <|begin_of_text|> (id 0), as encode(text).ids does.
  CHECK(tok.encode("x = 1234567", pq::text::special_tokens::add) == ids{0, 89, 278, 222, 18, 19, 20, 21, 22, 23, 24});
  CHECK(tok.token_id("<|end_of_text|>") == 1);
  // tokenizers' NFC turns "e" + U+0301 into U+00E9 (ids [129, 104]); pq does not implement
  // that composition and must say so instead of encoding differently.
  const auto nfc = tokenizer_error_of([&] { tok.encode("abc e\u0301"); });
  CHECK(nfc.find("byte offset 5") != std::string::npos);
  CHECK(nfc.find("U+0301") != std::string::npos);
  // The offset counts from the start of the text, across added tokens.
  CHECK(tokenizer_error_of([&] { tok.encode("<|end_of_text|>e\u0301"); }).find("byte offset 16") != std::string::npos);
}

TEST_CASE("byte-level alphabet matches GPT-2's bytes_to_unicode") {
  // Printable ASCII stands for itself; space is U+0120 'Ġ', newline U+010A 'Ċ', byte 0 U+0100.
  CHECK(pq::text::to_byte_level("A~!") == "A~!");
  CHECK(pq::text::to_byte_level(" ") == "\u0120");
  CHECK(pq::text::to_byte_level("\n") == "\u010a");
  CHECK(pq::text::to_byte_level(std::string(1, '\0')) == "\u0100");
  CHECK(pq::text::to_byte_level("\xad") == "\u0143");  // soft hyphen, the last non-printable byte
  std::string all;
  for (int b = 0; b < 256; ++b) all += static_cast<char>(b);
  CHECK(pq::text::from_byte_level(pq::text::to_byte_level(all)) == all);
  CHECK_FALSE(pq::text::from_byte_level("\u4e2d").has_value());
}

TEST_CASE("\\s in a split pattern is Unicode White_Space, as in tokenizers") {
  const pq::text::regex space(R"(\s+)");
  // U+00A0 and U+3000 are White_Space; U+180E (Mongolian vowel separator) is not since Unicode 6.3.
  const auto pieces = space.split("a\u00a0\u3000b\u180e");
  REQUIRE(pieces.size() == 3);
  CHECK(pieces[1].text == "\u00a0\u3000");
  CHECK(pieces[1].is_match);
  CHECK(pieces[2].text == "b\u180e");
}

TEST_CASE("bad input gets one clear error") {
  const auto tok = tokenizer::from_file(llama3_style);
  CHECK(tokenizer_error_of([&] { tok.encode("ok\xff"); }).find("invalid UTF-8 at byte offset 2") != std::string::npos);
  CHECK(tokenizer_error_of([&] { tok.encode("a\xc3"); }).find("byte offset 1") != std::string::npos);          // truncated
  CHECK(tokenizer_error_of([&] { tok.encode("\xed\xa0\x80"); }).find("byte offset 0") != std::string::npos);   // surrogate
  CHECK(tokenizer_error_of([&] { tok.encode("\xc0\xaf"); }).find("byte offset 0") != std::string::npos);       // overlong
  CHECK(tokenizer_error_of([&] { tok.decode(ids{5, 320}); }).find("id 320") != std::string::npos);
  CHECK(tokenizer_error_of([&] { tok.decode(ids{-1}); }).find("id -1") != std::string::npos);
  CHECK(tokenizer_error_of([&] { tok.require_fits(100, "config.json"); }).find("config.json: vocab_size 100") != std::string::npos);
  CHECK_NOTHROW(tok.require_fits(320, "config.json"));
  CHECK(tokenizer_error_of([] { tokenizer::from_file("/nonexistent/tokenizer.json"); }).find("/nonexistent/tokenizer.json") !=
        std::string::npos);

  const nlohmann::json unigram = {{"model", {{"type", "Unigram"}, {"vocab", nlohmann::json::array()}}}};
  CHECK(tokenizer_error_of([&] { tokenizer::from_json(unigram, "u.json"); }).find("u.json: model type 'Unigram' is not supported") !=
        std::string::npos);
  const nlohmann::json wordpiece = {{"model", {{"type", "WordPiece"}, {"vocab", nlohmann::json::object()}}}};
  CHECK(tokenizer_error_of([&] { tokenizer::from_json(wordpiece, "w.json"); }).find("'WordPiece' is not supported") !=
        std::string::npos);
  const nlohmann::json sentencepiece_bpe = {
      {"model", {{"type", "BPE"}, {"byte_fallback", true}, {"vocab", {{"a", 0}}}, {"merges", nlohmann::json::array()}}},
      {"pre_tokenizer", {{"type", "Metaspace"}}}};
  CHECK(tokenizer_error_of([&] { tokenizer::from_json(sentencepiece_bpe, "s.json"); }).find("byte_fallback") != std::string::npos);
  auto metaspace = sentencepiece_bpe;
  metaspace["model"]["byte_fallback"] = false;
  CHECK(tokenizer_error_of([&] { tokenizer::from_json(metaspace, "s.json"); }).find("pre-tokenizer 'Metaspace' is not supported") !=
        std::string::npos);
}

TEST_CASE("load_model_tokenizer checks config.json vocab_size") {
  if (!fs::exists(tiny_llama / "tokenizer.json")) {
    MESSAGE("skipped: " << tiny_llama << " is absent");
    return;
  }
  CHECK(pq::text::load_model_tokenizer(tiny_llama).vocab_size() == 8192);
  const auto dir = fs::temp_directory_path() / "pq_text_vocab_check";
  fs::create_directories(dir);
  fs::copy_file(tiny_llama / "tokenizer.json", dir / "tokenizer.json", fs::copy_options::overwrite_existing);
  std::ofstream(dir / "config.json") << R"({"vocab_size": 4096})";
  const auto message = tokenizer_error_of([&] { pq::text::load_model_tokenizer(dir); });
  CHECK(message.find("config.json: vocab_size 4096 is smaller than the tokenizer's 8192 ids") != std::string::npos);
  fs::remove_all(dir);
}

TEST_CASE("BPE merges lowest rank first, leftmost first among equals") {
  // Hand-checked (and confirmed with tokenizers 0.23.3): with merges (a b) < (b a) < (a a), "aba" -> ab|a, "bab" -> b|ab, "aaa" -> aa|a,
  // "abab" -> ab|ab; "aab" -> a|ab since (a b) outranks (a a).
  const nlohmann::json j = {
      {"model",
       {{"type", "BPE"},
        {"vocab", {{"a", 0}, {"b", 1}, {"ab", 2}, {"ba", 3}, {"aa", 4}}},
        {"merges", {"a b", "b a", "a a"}}}},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}},
      {"decoder", {{"type", "ByteLevel"}}}};
  const auto tok = tokenizer::from_json(j, "inline");
  CHECK(tok.encode("aba") == ids{2, 0});
  CHECK(tok.encode("bab") == ids{1, 2});
  CHECK(tok.encode("aaa") == ids{4, 0});
  CHECK(tok.encode("abab") == ids{2, 2});
  CHECK(tok.encode("aab") == ids{0, 2});
  CHECK(tokenizer_error_of([&] { tok.encode("c"); }).find("no token for 'c'") != std::string::npos);
}
