// pq/formats/bundle.hpp: the registry of every format pq ships, compile-time bundles of a subset, and the
// one place a run-time format name becomes a type.
#pragma once
#include <optional>
#include <stdexcept>
#include <type_traits>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <pq/core/type_list.hpp>
#include <pq/error.hpp>
#include <pq/formats/bf16.hpp>
#include <pq/formats/format.hpp>
#include <pq/formats/fp8.hpp>
#include <pq/formats/int.hpp>
#include <pq/formats/mxfp.hpp>
#include <pq/formats/nvfp4.hpp>

namespace pq {

// A compile-time selection of formats, e.g. bundle<NVFP4, MXFP8_E4M3, BF16>.
template <Format... Fs>
using bundle = type_list<Fs...>;

// Every format of the registry, in the order `pq formats` lists them.
using all_formats = bundle<NVFP4, NVFP4A16, MXFP4, MXFP6_E3M2, MXFP6_E2M3, MXFP8_E4M3, FP8_CHANNEL, INT4_G128,
                           INT4_G128_ASYM, INT8_CHANNEL, FP8_SOURCE, BF16>;

// The formats pq rounds into (RTN, sweep, GPTQ, SignRound, pack): all but those that only keep a source's tensors.
template <class F> struct is_roundable_format : std::bool_constant<is_roundable<F>> {};
using roundable_formats = filter_t<is_roundable_format, all_formats>;

struct unknown_format : pq::error {
  using pq::error::error;
};

template <class Bundle = all_formats>
std::vector<std::string_view> format_names() {
  std::vector<std::string_view> names;
  Bundle::for_each([&](auto t) { names.push_back(decltype(t)::type::name); });
  return names;
}

// Calls f(F{}) for the format of the bundle named `name` and returns its result; an unknown name is
// an error listing the valid ones.
template <class Bundle = all_formats, class Fn>
auto visit_format(std::string_view name, Fn&& f) {
  using first = decltype([]<class F, class... Rest>(type_list<F, Rest...>*) { return std::type_identity<F>{}; }(
      static_cast<Bundle*>(nullptr)))::type;
  using result = std::remove_cvref_t<decltype(f(first{}))>;
  if constexpr (std::is_void_v<result>) {
    const bool found = Bundle::any_of([&](auto t) {
      if (decltype(t)::type::name != name) return false;
      f(typename decltype(t)::type{});
      return true;
    });
    if (found) return;
  } else {
    std::optional<result> out;
    Bundle::any_of([&](auto t) {
      if (decltype(t)::type::name != name) return false;
      out.emplace(f(typename decltype(t)::type{}));
      return true;
    });
    if (out) return std::move(*out);
  }
  std::string valid;
  for (auto n : format_names<Bundle>()) valid += (valid.empty() ? "" : ", ") + std::string(n);
  throw unknown_format("unknown format '" + std::string(name) + "'; valid formats: " + valid);
}

// What code that names formats at run time (the pipeline, the exporter, the checkpoint reader) needs to
// know of one, resolved from its type once: no format name is compared as a string anywhere else.
struct format_traits {
  std::string_view name;
  bool passthrough = false;             // keeps the source tensor where it is in kept_encoding (is_passthrough)
  source_encoding kept_encoding;        // what a passthrough format keeps: a dense weight, or block FP8 in these tiles
  bool roundable = false;               // is_roundable
  bool exportable = false;              // is_exportable
  bool has_scheme = false;              // a compressed-tensors config group (else the ignore list, or not exportable)
  bool needs_activation_stats = false;  // needs_activation_stats
  bool (*accepts)(index_t rows, index_t cols) = nullptr;
  index_t (*stored_bytes)(index_t rows, index_t cols) = nullptr;  // exact bytes of one Linear

  // Whether a Linear stored as `source` ships as the source holds it (nothing rounded), and whether this format is
  // available for it at all (kept, or rounded into: FP8_SOURCE of a dense weight is neither). Shapes aside.
  bool keeps(const source_encoding& source) const { return passthrough && kept_encoding == source; }
  bool available(const source_encoding& source) const { return keeps(source) || roundable; }
};

template <Format F>
constexpr format_traits traits_of() {
  return {F::name,         is_passthrough<F>,         kept_encoding<F>, is_roundable<F>,
          is_exportable<F>, F::scheme.has_value(), needs_activation_stats<F>, &pq::accepts<F>,
          &pq::stored_bytes<F>};
}

// The traits of the format of the bundle named `name`; an unknown name is unknown_format.
template <class Bundle = all_formats>
format_traits resolve_format(std::string_view name) {
  return visit_format<Bundle>(name, [](auto f) { return traits_of<decltype(f)>(); });
}

}  // namespace pq
