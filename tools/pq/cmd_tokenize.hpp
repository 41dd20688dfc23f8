// `pq tokenize` and `pq detokenize`: text <-> token ids with a model's tokenizer.json.
#pragma once

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/core.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <pq/text/tokenizer.hpp>
#include <pq/text/utf8.hpp>

#include "options_cli.hpp"

namespace pq::cli {

namespace detail {

// A tokenizer.json file, or a model directory (then checked against its config.json).
inline text::tokenizer open_tokenizer(const std::filesystem::path& path) {
  return std::filesystem::is_directory(path) ? text::load_model_tokenizer(path) : text::tokenizer::from_file(path);
}

// The bytes of a file, or of standard input for "-".
inline std::string read_input(const std::string& path) {
  if (path == "-") return std::string(std::istreambuf_iterator<char>(std::cin), {});
  std::ifstream in(path, std::ios::binary);
  if (!in) throw text::text_error(path + ": cannot open");
  return std::string(std::istreambuf_iterator<char>(in), {});
}

inline std::vector<std::int32_t> parse_ids(const std::string& content, const std::string& source) {
  std::vector<std::int32_t> ids;
  std::istringstream in(content);
  std::string word;
  while (in >> word) {
    std::size_t used = 0;
    long long value = 0;
    try {
      value = std::stoll(word, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != word.size() || value < 0 || value > INT32_MAX)
      throw text::text_error(source + ": '" + word + "' (id " + std::to_string(ids.size()) + ") is not a token id");
    ids.push_back(static_cast<std::int32_t>(value));
  }
  return ids;
}

}  // namespace detail

inline void add_text_commands(CLI::App& app) {
  struct options {
    std::string tokenizer;
    std::string input = "-";
    bool add_special_tokens = false;
    bool skip_special_tokens = false;
  };
  auto opt = std::make_shared<options>();

  auto* tokenize = app.add_subcommand("tokenize", "Print the token ids of a UTF-8 text file, space-separated");
  add_example(*tokenize, "pq tokenize --tokenizer M --text notes.txt");
  tokenize->add_option("--tokenizer", opt->tokenizer, "tokenizer.json, or a model directory holding one")->required();
  tokenize->add_option("--text", opt->input, "text file ('-' reads standard input)")->required();
  tokenize->add_flag("--add-special-tokens", opt->add_special_tokens,
                     "apply the post-processor template (e.g. prepend <|begin_of_text|>)");
  tokenize->callback([opt] {
    const auto tok = detail::open_tokenizer(opt->tokenizer);
    const std::string text = detail::read_input(opt->input);
    text::require_utf8(text, opt->input == "-" ? "standard input" : opt->input);
    const auto ids = tok.encode(text, opt->add_special_tokens ? text::special_tokens::add : text::special_tokens::omit);
    fmt::print("{}\n", fmt::join(ids, " "));
  });

  auto* detokenize = app.add_subcommand("detokenize", "Write the text of whitespace-separated token ids");
  add_example(*detokenize, "pq detokenize --tokenizer M --ids ids.txt");
  detokenize->add_option("--tokenizer", opt->tokenizer, "tokenizer.json, or a model directory holding one")->required();
  detokenize->add_option("--ids", opt->input, "file of ids ('-' reads standard input)");
  detokenize->add_flag("--skip-special-tokens", opt->skip_special_tokens, "leave out special added tokens");
  detokenize->callback([opt] {
    const auto tok = detail::open_tokenizer(opt->tokenizer);
    const auto ids = detail::parse_ids(detail::read_input(opt->input), opt->input == "-" ? "standard input" : opt->input);
    const std::string bytes =
        tok.decode(ids, opt->skip_special_tokens ? text::decoded_specials::skip : text::decoded_specials::keep);
    std::fwrite(bytes.data(), 1, bytes.size(), stdout);
  });
}

}  // namespace pq::cli
