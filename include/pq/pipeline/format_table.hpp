// pq/pipeline/format_table.hpp: the formats one run uses, resolved once from their names: traits (bits,
// passthrough, activation statistics) and the rounding each gets. The stages ask this table, never a
// format's name, what to do with a format; only rounding itself (cost_table.hpp) and packing visit the type.
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
  std::optional<rounding> method;  // none for a passthrough format: nothing is rounded
};

class format_table {
 public:
  // Unknown names are unknown_format (listing the valid ones); a name given twice is an error.
  format_table(const std::vector<std::string>& names, rounding method) {
    if (std::set<std::string>(names.begin(), names.end()).size() != names.size())
      throw pipeline_error("--formats lists a format twice");
    if (names.empty()) throw pipeline_error("--formats is empty");
    for (const auto& n : names) {
      const format_traits t = resolve_format(n);
      formats_.push_back({n, t, t.passthrough ? std::nullopt : std::optional<rounding>(method)});
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

  // Exact stored bits of a unit in format fi, or none when a member's shape is not accepted.
  std::optional<std::int64_t> unit_bits(const arch::profile& p, const arch::decision_unit& u, std::size_t fi) const {
    const format_traits& t = formats_.at(fi).traits;
    std::int64_t bits = 0;
    for (int m : u.members) {
      const auto& l = p.linears[static_cast<std::size_t>(m)];
      if (!t.accepts(l.rows, l.cols)) return std::nullopt;
      bits += t.stored_bytes(l.rows, l.cols) * 8;
    }
    return bits;
  }
  // Whether format fi has something to round for unit u (not passthrough, and it accepts the shapes).
  bool rounds(const arch::profile& p, const arch::decision_unit& u, std::size_t fi) const {
    return formats_.at(fi).method.has_value() && unit_bits(p, u, fi).has_value();
  }

  // For report.json: what each format of the run is and how it was rounded.
  nlohmann::json json() const {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& f : formats_)
      j.push_back({{"name", f.name},
                   {"passthrough", f.traits.passthrough},
                   {"needs_activation_stats", f.traits.needs_activation_stats},
                   {"rounding", f.method ? nlohmann::json(std::string(rounding_name(*f.method))) : nlohmann::json(nullptr)}});
    return j;
  }

 private:
  std::vector<run_format> formats_;
};

}  // namespace pq::pipeline
