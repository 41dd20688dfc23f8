// Calibration and evaluation windows from text files: read documents (plain text or JSON
// lines), tokenize, and cut [n, seq_len] int32 windows, calib and eval never sharing a document.
#pragma once

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include <nlohmann/json.hpp>

#include "pq/text/error.hpp"
#include "pq/text/tokenizer.hpp"
#include "pq/text/utf8.hpp"

namespace pq::text {

// plain: prose or code; its documents are its paragraphs (text up to and including a run
// of blank lines), which join back into the file exactly. json_lines: one JSON object per
// line whose string field "text" is one document.
enum class text_format { plain, json_lines };

// json_lines for the extensions .jsonl and .ndjson, plain otherwise.
inline text_format detect_text_format(const std::filesystem::path& path) {
  const auto ext = path.extension().string();
  return (ext == ".jsonl" || ext == ".ndjson") ? text_format::json_lines : text_format::plain;
}

namespace detail {

inline std::string read_whole_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw text_error(path.string() + ": cannot open text file");
  return std::string(std::istreambuf_iterator<char>(in), {});
}

inline bool is_blank(std::string_view line) {
  return line.find_first_not_of(" \t\r\n\f\v") == std::string_view::npos;
}

inline std::vector<std::string> paragraphs(std::string_view text) {
  std::vector<std::string> docs;
  std::size_t doc_start = 0;
  bool after_blank = false;
  std::size_t line_start = 0;
  while (line_start < text.size()) {
    const std::size_t newline = text.find('\n', line_start);
    const std::size_t line_end = newline == std::string_view::npos ? text.size() : newline + 1;
    const bool blank = is_blank(text.substr(line_start, line_end - line_start));
    if (!blank && after_blank && line_start > doc_start) {
      docs.emplace_back(text.substr(doc_start, line_start - doc_start));
      doc_start = line_start;
    }
    after_blank = blank;
    line_start = line_end;
  }
  if (doc_start < text.size()) docs.emplace_back(text.substr(doc_start));
  return docs;
}

inline std::vector<std::string> json_line_documents(std::string_view text, const std::filesystem::path& path) {
  std::vector<std::string> docs;
  std::size_t line_number = 0;
  std::size_t line_start = 0;
  while (line_start < text.size()) {
    ++line_number;
    const std::size_t newline = text.find('\n', line_start);
    const std::size_t line_end = newline == std::string_view::npos ? text.size() : newline;
    const std::string_view line = text.substr(line_start, line_end - line_start);
    line_start = line_end + 1;
    if (is_blank(line)) continue;
    const auto where = [&] { return path.string() + ":" + std::to_string(line_number); };
    nlohmann::json record;
    try {
      record = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      throw text_error(where() + ": not a JSON line: " + e.what());
    }
    if (!record.is_object() || !record.contains("text") || !record["text"].is_string())
      throw text_error(where() + ": a JSON line needs a string field \"text\"");
    auto document = record["text"].get<std::string>();
    if (!document.empty()) docs.push_back(std::move(document));
  }
  return docs;
}

}  // namespace detail

// The documents of a text file; throws text_error naming the file for a missing file,
// invalid UTF-8 (with the byte offset), a bad JSON line, or no text at all.
inline std::vector<std::string> read_documents(const std::filesystem::path& path) {
  const std::string bytes = detail::read_whole_file(path);
  require_utf8(bytes, path.string());
  auto docs = detect_text_format(path) == text_format::json_lines ? detail::json_line_documents(bytes, path)
                                                                   : detail::paragraphs(bytes);
  if (std::all_of(docs.begin(), docs.end(), [](const std::string& d) { return detail::is_blank(d); }))
    throw text_error(path.string() + ": contains no text");
  return docs;
}

// Row-major [rows, seq_len] token ids.
struct token_windows {
  std::size_t rows = 0;
  std::size_t seq_len = 0;
  std::vector<std::int32_t> ids;

  std::span<const std::int32_t> row(std::size_t i) const { return std::span(ids).subspan(i * seq_len, seq_len); }
};

struct window_counts {
  std::size_t seq_len;
  std::size_t calib_windows;
  std::size_t eval_windows;
};

// Where a side's windows were cut from, for reports: documents [first_document, last_document) of
// file (of `documents` in it), whose joined token stream holds `tokens` tokens.
struct window_origin {
  std::filesystem::path file;
  std::size_t first_document = 0, last_document = 0, documents = 0;
  std::size_t tokens = 0;
  std::size_t dropped_documents = 0;  // evaluation documents left out because the calibration text holds them too
};

struct calibration_windows {
  token_windows calib;
  token_windows eval;
  window_origin calib_origin, eval_origin;
};

// How documents are tokenized: JSON-line documents are joined with separator (when set,
// e.g. the model's end-of-text id); paragraphs of a plain file are contiguous text.
struct tokenized_documents {
  std::vector<std::vector<std::int32_t>> docs;
  std::optional<std::int32_t> separator;
};

inline tokenized_documents tokenize_documents(const tokenizer& tok, const std::vector<std::string>& docs,
                                              const std::filesystem::path& path, std::optional<std::int32_t> separator) {
  const text_format format = detect_text_format(path);
  tokenized_documents out{{}, format == text_format::json_lines ? separator : std::nullopt};
  out.docs.reserve(docs.size());
  for (std::size_t i = 0; i < docs.size(); ++i) {
    try {
      out.docs.push_back(tok.encode(docs[i]));
    } catch (const text_error& e) {
      throw text_error(path.string() + ": document " + std::to_string(i) + ": " + e.what());
    }
  }
  return out;
}

// The token stream of documents [first, last).
inline std::vector<std::int32_t> join_documents(const tokenized_documents& t, std::size_t first, std::size_t last) {
  std::vector<std::int32_t> stream;
  for (std::size_t i = first; i < last; ++i) {
    if (i > first && t.separator) stream.push_back(*t.separator);
    stream.insert(stream.end(), t.docs[i].begin(), t.docs[i].end());
  }
  return stream;
}

// count windows of seq_len, non-overlapping, spread evenly over stream.
inline token_windows cut_windows(const std::vector<std::int32_t>& stream, std::size_t count, std::size_t seq_len,
                                 std::string_view what) {
  const std::size_t available = stream.size() / seq_len;
  if (available < count)
    throw text_error(std::string(what) + ": needs " + std::to_string(count) + " windows of " + std::to_string(seq_len) +
                     " tokens (" + std::to_string(count * seq_len) + " tokens) but its text gives only " +
                     std::to_string(stream.size()) + " tokens");
  token_windows w{count, seq_len, {}};
  w.ids.reserve(count * seq_len);
  for (std::size_t i = 0; i < count; ++i) {
    const auto begin = stream.begin() + static_cast<std::ptrdiff_t>(i * available / count * seq_len);
    w.ids.insert(w.ids.end(), begin, begin + static_cast<std::ptrdiff_t>(seq_len));
  }
  return w;
}

// The first document index of the shortest tail of docs that holds `tokens` tokens.
inline std::size_t held_out_tail_start(const tokenized_documents& t, std::size_t tokens, const std::filesystem::path& path) {
  std::size_t have = 0;
  for (std::size_t start = t.docs.size(); start-- > 1;) {
    have += t.docs[start].size() + (t.separator && start + 1 < t.docs.size() ? 1 : 0);
    if (have >= tokens) return start;
  }
  throw text_error(path.string() + ": too little text to hold out " + std::to_string(tokens) +
                   " evaluation tokens in whole documents and keep calibration text (" +
                   std::to_string(t.docs.size()) + " documents); give --eval-text or more text");
}

// Removes from eval_docs every (non-blank) document that also occurs in calib_docs, so that evaluation never
// measures text the calibration saw, and returns how many it removed. Throws when no non-blank evaluation
// document is left.
inline std::size_t drop_shared_documents(const std::vector<std::string>& calib_docs, std::vector<std::string>& eval_docs,
                                         const std::filesystem::path& calib_path, const std::filesystem::path& eval_path) {
  const std::unordered_set<std::string_view> seen(calib_docs.begin(), calib_docs.end());
  const auto shared = [&](const std::string& d) { return !detail::is_blank(d) && seen.contains(d); };
  const std::size_t before = eval_docs.size();
  std::erase_if(eval_docs, shared);
  if (std::all_of(eval_docs.begin(), eval_docs.end(), [](const std::string& d) { return detail::is_blank(d); }))
    throw text_error(eval_path.string() + ": every document also occurs in " + calib_path.string() +
                     ": no evaluation text is left that calibration has not seen");
  return before - eval_docs.size();
}

// Windows for calibration and evaluation. With eval_path, each file feeds its own side
// (evaluation documents that also occur in the calibration file are dropped, and counted); without, the calibration file's last documents are
// held out for evaluation, never cutting a document. Throws text_error naming the file
// when there are too few tokens for the requested windows.
inline calibration_windows make_calibration_windows(const tokenizer& tok, const std::filesystem::path& calib_path,
                                                    const std::optional<std::filesystem::path>& eval_path,
                                                    const window_counts& counts,
                                                    std::optional<std::int32_t> document_separator) {
  if (counts.seq_len == 0) throw text_error("--seq-len must be at least 1");
  const auto calib_docs = read_documents(calib_path);
  const auto calib = tokenize_documents(tok, calib_docs, calib_path, document_separator);
  calibration_windows out;
  if (eval_path) {
    auto eval_docs = read_documents(*eval_path);
    const std::size_t dropped = drop_shared_documents(calib_docs, eval_docs, calib_path, *eval_path);
    const auto eval = tokenize_documents(tok, eval_docs, *eval_path, document_separator);
    const auto calib_stream = join_documents(calib, 0, calib.docs.size());
    const auto eval_stream = join_documents(eval, 0, eval.docs.size());
    out.calib = cut_windows(calib_stream, counts.calib_windows, counts.seq_len, calib_path.string() + " (calibration)");
    out.eval = cut_windows(eval_stream, counts.eval_windows, counts.seq_len, eval_path->string() + " (evaluation)");
    out.calib_origin = {calib_path, 0, calib.docs.size(), calib.docs.size(), calib_stream.size()};
    out.eval_origin = {*eval_path, 0, eval.docs.size(), eval.docs.size(), eval_stream.size(), dropped};
    return out;
  }
  const std::size_t split = counts.eval_windows == 0
                                ? calib.docs.size()
                                : held_out_tail_start(calib, counts.eval_windows * counts.seq_len, calib_path);
  const auto calib_stream = join_documents(calib, 0, split);
  const auto eval_stream = join_documents(calib, split, calib.docs.size());
  out.calib = cut_windows(calib_stream, counts.calib_windows, counts.seq_len, calib_path.string() + " (calibration part)");
  out.eval = cut_windows(eval_stream, counts.eval_windows, counts.seq_len, calib_path.string() + " (held-out evaluation part)");
  out.calib_origin = {calib_path, 0, split, calib.docs.size(), calib_stream.size()};
  out.eval_origin = {calib_path, split, calib.docs.size(), calib.docs.size(), eval_stream.size()};
  return out;
}

// `count` windows of seq_len from one text file on its own (e.g. evaluation text when calibration is
// self-generated); origin, when given, says what they were cut from.
inline token_windows make_windows(const tokenizer& tok, const std::filesystem::path& path, std::size_t count,
                                  std::size_t seq_len, std::optional<std::int32_t> document_separator,
                                  window_origin* origin = nullptr) {
  if (seq_len == 0) throw text_error("--seq-len must be at least 1");
  const auto docs = tokenize_documents(tok, read_documents(path), path, document_separator);
  const auto stream = join_documents(docs, 0, docs.docs.size());
  auto w = cut_windows(stream, count, seq_len, path.string());
  if (origin) *origin = {path, 0, docs.docs.size(), docs.docs.size(), stream.size()};
  return w;
}

}  // namespace pq::text
