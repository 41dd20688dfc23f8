// pq/pipeline/format_table.hpp: the formats one run uses, resolved once from their names: traits (bits,
// passthrough, activation statistics), the rounding each gets, and how the source stores each Linear, which
// decides where a passthrough format keeps the source's tensors. The stages ask this table, never a format's
// name, what to do with a format; only rounding itself (cost_table.hpp) and packing visit the type.
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <pq/arch/profile.hpp>
#include <pq/formats/bundle.hpp>
#include <pq/pipeline/options.hpp>
#include <pq/quant/quantize_linear.hpp>

namespace pq::pipeline {

struct run_format {
  std::string name;
  format_traits traits;
  // How it rounds where it does not keep the source: the run's rounding; a passthrough format rounds to
  // nearest (BF16 of a block-FP8 weight: its honest meaning); none for one that only keeps (FP8_SOURCE).
  std::optional<rounding> method;
};

class format_table {
 public:
  // `sources[i]`: how the source stores profile.linears[i] (io::linear_encoding). Unknown names are
  // unknown_format (listing the valid ones); a name given twice is an error, and so is a format that only keeps a
  // source's tensors (FP8_SOURCE) where no Linear is stored that way: it could never be chosen, and an
  // infeasible budget or a silently unused format would hide why.
  format_table(const std::vector<std::string>& names, rounding method, std::vector<source_encoding> sources)
      : sources_(std::move(sources)) {
    if (std::set<std::string>(names.begin(), names.end()).size() != names.size())
      throw pipeline_error("--formats lists a format twice");
    if (names.empty()) throw pipeline_error("--formats is empty");
    for (const auto& n : names) {
      const format_traits t = resolve_format(n);
      std::optional<rounding> m;
      if (t.roundable) m = t.passthrough ? rounding::rtn : method;
      bool kept_somewhere = false;
      for (const auto& s : sources_) kept_somewhere = kept_somewhere || t.keeps(s);
      if (!t.roundable && !kept_somewhere)
        throw pipeline_error("--formats " + n + ": " + n + " ships a Linear the source stores as " +
                             describe(t.kept_encoding) + " as it is, and this source stores no Linear so (pq does not "
                             "round into it); drop it from --formats");
      formats_.push_back({n, t, m});
    }
  }

  std::size_t size() const { return formats_.size(); }
  const run_format& operator[](std::size_t i) const { return formats_.at(i); }
  auto begin() const { return formats_.begin(); }
  auto end() const { return formats_.end(); }
  std::vector<std::string> names() const {
    std::vector<std::string> n;
    for (const auto& f : formats_) n.push_back(f.name);
    return n;
  }
  std::string list() const {
    std::string s;
    for (const auto& f : formats_) s += (s.empty() ? "" : ",") + f.name;
    return s;
  }

  // Whether Linear `linear` (an index into the profile) ships in format fi as the source holds it: nothing rounded,
  // zero error (BF16 of a dense weight, FP8_SOURCE of a block-FP8 one).
  bool keeps(std::size_t linear, std::size_t fi) const { return formats_.at(fi).traits.keeps(sources_.at(linear)); }

  // Exact stored bits of a unit in format fi, or none when the format is not available for it: a member's shape
  // it does not accept, or a member it could only keep and the source does not store that way.
  std::optional<std::int64_t> unit_bits(const arch::profile& p, const arch::decision_unit& u, std::size_t fi) const {
    const format_traits& t = formats_.at(fi).traits;
    std::int64_t bits = 0;
    for (int m : u.members) {
      const auto& l = p.linears[static_cast<std::size_t>(m)];
      if (!t.accepts(l.rows, l.cols) || !t.available(sources_.at(static_cast<std::size_t>(m)))) return std::nullopt;
      bits += t.stored_bytes(l.rows, l.cols) * 8;
    }
    return bits;
  }
  // Whether format fi has something to round for unit u (available, and some member not kept as the source holds it).
  bool rounds(const arch::profile& p, const arch::decision_unit& u, std::size_t fi) const {
    if (!unit_bits(p, u, fi)) return false;
    for (int m : u.members)
      if (!keeps(static_cast<std::size_t>(m), fi)) return true;
    return false;
  }

  // For report.json: what each format of the run is and how it was rounded.
  nlohmann::json json() const {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& f : formats_)
      j.push_back({{"name", f.name},
                   {"passthrough", f.traits.passthrough},
                   {"keeps", f.traits.passthrough ? nlohmann::json(describe(f.traits.kept_encoding)) : nlohmann::json(nullptr)},
                   {"needs_activation_stats", f.traits.needs_activation_stats},
                   {"rounding", f.method ? nlohmann::json(std::string(rounding_name(*f.method))) : nlohmann::json(nullptr)}});
    return j;
  }

 private:
  std::vector<run_format> formats_;
  std::vector<source_encoding> sources_;  // per profile Linear
};

}  // namespace pq::pipeline
