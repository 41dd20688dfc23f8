// pq/pipeline/options.hpp: stage 0 of `pq quantize`, what the job takes. Every option is a field of
// quantize_options carrying its own flag, help and role, and code that needs "every option" walks the
// fields with Boost.PFR instead of listing them: the CLI binds each one (tools/pq), the work folder's key
// hashes the ones that change the stored roundings (cost_table.hpp), report.json echoes them all. A field
// added here is therefore bound, keyed and reported without another edit.
#pragma once
#include <cstdint>
#include <filesystem>
#include <initializer_list>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <boost/pfr.hpp>
#include <nlohmann/json.hpp>

#include <pq/core/hash.hpp>
#include <pq/error.hpp>
#include <pq/pipeline/error.hpp>
#include <pq/quant/quantize_linear.hpp>

namespace pq::pipeline {

// What else an option is, beyond a value with a flag: part of the work folder's key (the stored roundings
// depend on it), or required on the command line.
enum class option_kind { plain, keyed, required };

// One option: its value and what describes it. `flag` is the command-line spelling (empty: not on the
// command line); a bool whose flag starts with "--no-" is switched off by it. (A constructor, not an
// aggregate: Boost.PFR counts the fields of quantize_options by aggregate initialization, which brace
// elision into aggregate members would confuse.)
template <class T>
struct option {
  using value_type = T;
  T value{};
  std::string_view flag;
  std::string_view help;
  bool keyed = false;
  bool required = false;

  option(T v, std::string_view f, std::string_view h, option_kind kind = option_kind::plain)
      : value(std::move(v)), flag(f), help(h), keyed(kind == option_kind::keyed), required(kind == option_kind::required) {}
  // A default that T is made from inside the constructor: a string literal, or for a list of strings one
  // comma-separated literal. (GCC 12 fails with an internal error when Boost.PFR counts the fields of a
  // struct whose member initializers construct a std::string themselves.)
  template <class Literal>
    requires std::is_same_v<std::decay_t<Literal>, const char*>
  option(Literal&& literal, std::string_view f, std::string_view h, option_kind kind = option_kind::plain)
      : option(T{}, f, h, kind) {
    const char* v = literal;
    if constexpr (std::is_same_v<T, std::vector<std::string>>) {
      std::string_view rest(v);
      while (!rest.empty()) {
        const auto comma = rest.find(',');
        value.emplace_back(rest.substr(0, comma));
        rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
      }
    } else {
      value = T(v);
    }
  }

  // An option reads as its value (o.out / "x", remove_all(o.out), bits <= o.target_bits); members through ->.
  operator const T&() const { return value; }
  T& operator*() { return value; }
  const T& operator*() const { return value; }
  T* operator->() { return &value; }
  const T* operator->() const { return &value; }
  option& operator=(T v) {
    value = std::move(v);
    return *this;
  }
  // o.formats = {"NVFP4", "BF16"}: without it, three strings would also fit the literal constructor.
  template <class E = T>
    requires requires { typename E::value_type; }
  option& operator=(std::initializer_list<typename E::value_type> v) {
    value = T(v);
    return *this;
  }
};

template <class T> struct is_option : std::false_type {};
template <class T> struct is_option<option<T>> : std::true_type {};

// Everything `pq quantize` takes.
struct quantize_options {
  using path = std::filesystem::path;
  option<path> model{{}, "--model", "Hugging Face model directory (read only)", option_kind::required};
  option<path> out{{}, "--out", "Output directory (must not exist unless --force)", option_kind::required};
  option<std::vector<std::string>> formats{"NVFP4,MXFP8_E4M3,BF16", "--formats", "Candidate formats, comma separated (see pq formats)"};
  option<double> target_bits{4.75, "--target-bits", "Budget: average bits per weight of the quantizable Linears"};
  option<std::string> calib{{}, "--calib", "Calibration tokens FILE[:TENSOR] (tensor default: calib), e.g. tokens.safetensors:calib"};
  option<std::string> eval{{}, "--eval", "Evaluation tokens FILE[:TENSOR] (tensor default: eval), disjoint from the calibration"};
  option<path> calib_text{{}, "--calib-text",
                          "Calibration text (plain, or .jsonl/.ndjson with a \"text\" field), tokenized by the model's "
                          "tokenizer.json; without --eval or --eval-text its last documents are held out for evaluation"};
  option<path> eval_text{{}, "--eval-text",
                         "Evaluation text; its documents that also occur in --calib-text are dropped (and counted)"};
  option<int> seq_len{0, "--seq-len",
                      "Tokens per text window or self-generated sequence (0: the eval length, else 512 text / 256 generated)"};
  option<int> calib_samples{0, "--calib-samples",
                            "Calibration windows of --calib-text, or self-generated sequences (0: 128; generated with eval: 64)"};
  option<int> eval_samples{0, "--eval-samples", "Evaluation windows of text (0: 64)"};
  option<bool> self_calibration{true, "--no-self-calibration",
                                "Without calibration data, do not sample calibration sequences from the model: "
                                "weight-only costs (H = I)"};
  option<std::uint64_t> seed{0, "--seed", "Seed of self-calibration's sampling"};
  option<rounding> method{rounding::gptq_sweep, "--rounding", "rtn | sweep | gptq | gptq+sweep | signround | gptq+signround",
                          option_kind::keyed};
  option<int> signround_iters{200, "--signround-iters",
                              "SignRound iterations per decoder layer (AutoRound's recipes: light 50, default 200, best 1000)",
                              option_kind::keyed};
  option<std::string> pareto{{}, "--pareto", "Budgets of the Pareto sweep LO:HI:STEP (default: the feasible range by 1/8)"};
  option<int> jobs{0, "--jobs", "Threads (0: all cores)"};
  option<bool> force{false, "--force", "Replace an existing output directory"};
  option<int> polish_trials{12, "--polish", "Measured single-unit changes tried after selection"};
  option<int> gradient_sequences{32, "--gradient-sequences",
                                 "Calibration sequences that also run the backward pass (Fisher sensitivities)", option_kind::keyed};
  option<int> calib_windows{0, "--calib-windows", "Use the first N calibration windows (0: all)"};
  option<int> eval_windows{0, "--eval-windows", "Use the first N evaluation windows (0: all)"};
  option<int> selection_windows{16, "--selection-windows", "Eval windows candidate selection measures on"};
  option<std::uint64_t> max_shard_bytes{5ull << 30, "--max-shard-bytes", "Largest safetensors shard of the checkpoint"};
  option<path> work{{}, "--work",
                    "Folder of the stored roundings, which later runs on the same inputs reuse (default: <out>.pq-work)"};
  option<bool> resume{true, "--no-resume",
                      "Round everything again instead of reusing the work folder of an earlier run on the same inputs"};
  option<std::string> device{"cpu", "--device", "cpu (cuda: not in this version)"};
};

// Calls fn(field) for every option of o, in declaration order.
template <class Options, class Fn>
void for_each_option(Options& o, Fn&& fn) {
  boost::pfr::for_each_field(o, [&](auto& field) {
    static_assert(is_option<std::remove_cvref_t<decltype(field)>>::value, "every field of an options struct is an option<T>");
    fn(field);
  });
}

// The flag's name without its dashes ("--target-bits" -> "target_bits"), as report.json spells keys.
inline std::string option_key(std::string_view flag) {
  std::string k(flag.substr(flag.find_first_not_of('-')));
  if (k.starts_with("no-")) k.erase(0, 3);
  for (char& c : k)
    if (c == '-') c = '_';
  return k;
}

namespace detail {
template <class T> nlohmann::json option_json(const T& v) {
  if constexpr (std::is_same_v<T, std::filesystem::path>) return v.string();
  else if constexpr (std::is_same_v<T, rounding>) return std::string(rounding_cli_name(v));
  else return v;
}
template <class T> void hash_option(fnv1a& h, const T& v) {
  if constexpr (std::is_same_v<T, std::filesystem::path>) h.text(v.string());
  else if constexpr (std::is_same_v<T, std::string>) h.text(v);
  else if constexpr (std::is_floating_point_v<T>) h.floating(v);
  else if constexpr (std::is_integral_v<T> || std::is_enum_v<T>) h.integer(v);
  else {
    h.integer(v.size());
    for (const auto& e : v) hash_option(h, e);
  }
}
}  // namespace detail

// Every option by its key, for report.json.
template <class Options>
nlohmann::json options_json(const Options& o) {
  nlohmann::json j = nlohmann::json::object();
  for_each_option(o, [&](const auto& f) { j[option_key(f.flag)] = detail::option_json(f.value); });
  return j;
}

// Adds the keyed options (their flags and values) to a hash.
template <class Options>
void hash_keyed_options(fnv1a& h, const Options& o) {
  for_each_option(o, [&](const auto& f) {
    if (!f.keyed) return;
    h.text(f.flag);
    detail::hash_option(h, f.value);
  });
}

// A token tensor inside a safetensors file, written FILE[:TENSOR] on every command line of pq.
struct token_spec {
  std::filesystem::path file;
  std::string tensor;
  std::string text() const { return file.string() + ":" + tensor; }
};

// FILE[:TENSOR]: a string naming an existing file is the file (its tensor default_tensor), else the text
// after the last ':' is the tensor.
inline token_spec parse_token_spec(const std::string& s, std::string_view flag, std::string_view default_tensor) {
  if (s.empty()) throw pipeline_error(std::string(flag) + ": expected FILE[:TENSOR], e.g. tokens.safetensors:calib");
  std::error_code ec;
  if (std::filesystem::is_regular_file(s, ec)) return {s, std::string(default_tensor)};
  const auto colon = s.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == s.size())
    throw pipeline_error(std::string(flag) + " '" + s + "': no such file (expected FILE[:TENSOR], e.g. tokens.safetensors:" +
                         std::string(default_tensor) + ")");
  return {s.substr(0, colon), s.substr(colon + 1)};
}

}  // namespace pq::pipeline
