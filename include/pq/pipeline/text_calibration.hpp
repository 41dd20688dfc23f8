// pq/pipeline/text_calibration.hpp: calibration and evaluation windows for `pq quantize` from text files,
// tokenized by the model's own tokenizer.json (pq::text), with a description of what was used for what.
#pragma once
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include <pq/model/tokens.hpp>
#include <pq/text/text_windows.hpp>
#include <pq/text/tokenizer.hpp>

namespace pq::pipeline {

struct text_request {
  std::filesystem::path calib_text, eval_text;  // either may be empty (not both)
  std::size_t seq_len = 512;
  std::size_t calib_windows = 128;
  std::size_t eval_windows = 64;  // with calib_text alone: held out from its last documents
};

struct text_tokens {
  std::optional<model::token_batch> calib, eval;
  std::string calib_description, eval_description;  // for report.json "tokens"
  long long eval_dropped_documents = -1;  // with both texts: evaluation documents also in the calibration text, dropped
};

// The id that joins JSON-line documents: config.json's eos_token_id (an integer or the first of a
// list), else none.
inline std::optional<std::int32_t> document_separator(const nlohmann::json& config) {
  if (!config.contains("eos_token_id")) return std::nullopt;
  const nlohmann::json& v = config["eos_token_id"];
  if (v.is_number_integer()) return v.get<std::int32_t>();
  if (v.is_array() && !v.empty() && v[0].is_number_integer()) return v[0].get<std::int32_t>();
  return std::nullopt;
}

namespace detail {
inline std::string describe_windows(const text::token_windows& w, const text::window_origin& o) {
  std::string s = std::to_string(w.rows) + " windows x " + std::to_string(w.seq_len) + " tokens from text " +
                  o.file.string() + ", ";
  if (o.first_document == 0 && o.last_document == o.documents)
    s += "all " + std::to_string(o.documents) + " documents";
  else
    s += "documents " + std::to_string(o.first_document) + ".." + std::to_string(o.last_document - 1) + " of " +
         std::to_string(o.documents);
  return s + " (" + std::to_string(o.tokens) + " tokens)";
}
inline model::token_batch to_batch(const text::token_windows& w, std::int64_t vocab, const std::string& what) {
  const std::int64_t shape[2] = {static_cast<std::int64_t>(w.rows), static_cast<std::int64_t>(w.seq_len)};
  return model::make_token_batch(shape, w.ids, vocab, what);
}
}  // namespace detail

// Tokenizes the text files with model_dir's tokenizer.json (checked against config.json's vocab_size)
// and cuts the windows. With calib_text alone, the evaluation windows come from its last whole documents,
// which the calibration windows never touch. Throws text::text_error naming the file for bad input.
inline text_tokens load_text_tokens(const std::filesystem::path& model_dir, const nlohmann::json& config,
                                    std::int64_t vocab, const text_request& r) {
  const text::tokenizer tok = text::load_model_tokenizer(model_dir);
  const auto sep = document_separator(config);
  text_tokens out;
  if (r.calib_text.empty()) {
    text::window_origin o;
    const auto w = text::make_windows(tok, r.eval_text, r.eval_windows, r.seq_len, sep, &o);
    out.eval = detail::to_batch(w, vocab, r.eval_text.string());
    out.eval_description = detail::describe_windows(w, o);
    return out;
  }
  const std::optional<std::filesystem::path> eval_path =
      r.eval_text.empty() ? std::nullopt : std::optional<std::filesystem::path>(r.eval_text);
  const auto w = text::make_calibration_windows(tok, r.calib_text, eval_path,
                                                {r.seq_len, r.calib_windows, r.eval_windows}, sep);
  out.calib = detail::to_batch(w.calib, vocab, r.calib_text.string());
  out.calib_description = detail::describe_windows(w.calib, w.calib_origin);
  if (w.eval.rows > 0) {
    out.eval = detail::to_batch(w.eval, vocab, (eval_path ? *eval_path : r.calib_text).string());
    out.eval_description = detail::describe_windows(w.eval, w.eval_origin);
    if (eval_path) {
      out.eval_dropped_documents = static_cast<long long>(w.eval_origin.dropped_documents);
      if (w.eval_origin.dropped_documents > 0)
        out.eval_description += "; " + std::to_string(w.eval_origin.dropped_documents) +
                                " documents that also occur in the calibration text were dropped";
    } else {
      out.calib_description += "; documents " + std::to_string(w.eval_origin.first_document) + ".." +
                               std::to_string(w.eval_origin.last_document - 1) + " are held out for evaluation";
      out.eval_description += ", held out: no calibration window comes from them";
    }
  }
  return out;
}

}  // namespace pq::pipeline
