// pq/alloc/report.hpp: allocation results as JSON, as a printed table, and per-Linear formats.
#pragma once

#include <cstdint>
#include <cstdio>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include <pq/alloc/pareto.hpp>
#include <pq/alloc/problem.hpp>
#include <pq/alloc/solver.hpp>

namespace pq::alloc {

// Every Linear (unit members, or the unit itself) with the format index its unit received.
inline std::vector<std::pair<std::string, int>> linear_formats(const Problem& p, const Assignment& a) {
  std::vector<std::pair<std::string, int>> out;
  for (std::size_t i = 0; i < p.units.size(); ++i) {
    const Unit& u = p.units[i];
    if (u.members.empty()) out.emplace_back(u.name, a.format[i]);
    for (const std::string& m : u.members) out.emplace_back(m, a.format[i]);
  }
  return out;
}

// Share of all parameters stored in each format (index = format).
inline std::vector<double> format_shares(const Problem& p, const Assignment& a) {
  std::vector<double> share(p.format_names.size(), 0.0);
  std::int64_t total = 0;
  for (std::size_t i = 0; i < p.units.size(); ++i) {
    share[static_cast<std::size_t>(a.format[i])] += static_cast<double>(p.units[i].params);
    total += p.units[i].params;
  }
  for (double& s : share) s /= static_cast<double>(total);
  return share;
}

// One solution: totals, the format of every unit, and the units that had a single candidate.
inline nlohmann::json assignment_json(const Problem& p, const Assignment& a) {
  nlohmann::json units = nlohmann::json::array(), forced = nlohmann::json::array();
  for (std::size_t i = 0; i < p.units.size(); ++i) {
    const Unit& u = p.units[i];
    const auto fmt = static_cast<std::size_t>(a.format[i]);
    for (const Option& o : u.options)
      if (o.format == a.format[i])
        units.push_back({{"name", u.name}, {"format", p.format_names[fmt]}, {"params", u.params},
                         {"stored_bits", o.stored_bits}, {"loss", o.loss}});
    if (u.options.size() == 1) forced.push_back({{"name", u.name}, {"format", p.format_names[fmt]}});
  }
  nlohmann::json shares = nlohmann::json::object();
  const std::vector<double> s = format_shares(p, a);
  for (std::size_t f = 0; f < s.size(); ++f)
    if (s[f] > 0.0) shares[p.format_names[f]] = s[f];
  return {{"target_bits_per_weight", a.target_bpp}, {"budget_bits", a.budget_bits},
          {"stored_bits", a.bits}, {"bits_per_weight", a.bpp}, {"predicted_loss", a.loss},
          {"lower_bound", a.lower_bound}, {"param_share", shares}, {"single_candidate_units", forced},
          {"units", units}};
}

// A sweep: one summary per budget, which points are on the Pareto curve, and the knee.
inline nlohmann::json sweep_json(const Problem& p, std::span<const Assignment> curve,
                                 std::optional<std::size_t> knee_index) {
  std::vector<bool> on_front(curve.size(), false);
  for (const std::size_t i : pareto_front(curve)) on_front[i] = true;
  nlohmann::json points = nlohmann::json::array();
  for (std::size_t i = 0; i < curve.size(); ++i) {
    nlohmann::json shares = nlohmann::json::object();
    const std::vector<double> s = format_shares(p, curve[i]);
    for (std::size_t f = 0; f < s.size(); ++f)
      if (s[f] > 0.0) shares[p.format_names[f]] = s[f];
    points.push_back({{"target_bits_per_weight", curve[i].target_bpp}, {"bits_per_weight", curve[i].bpp},
                      {"stored_bits", curve[i].bits}, {"predicted_loss", curve[i].loss},
                      {"pareto", static_cast<bool>(on_front[i])}, {"param_share", shares}});
  }
  nlohmann::json knee_json = nullptr;
  if (knee_index) knee_json = {{"index", *knee_index}, {"bits_per_weight", curve[*knee_index].bpp},
                               {"predicted_loss", curve[*knee_index].loss}};
  return {{"points", points}, {"knee", knee_json}};
}

// Fixed-width table: target, achieved bpp, loss, share of parameters per format used anywhere.
inline std::string sweep_table(const Problem& p, std::span<const Assignment> curve,
                               std::optional<std::size_t> knee_index) {
  std::vector<bool> used(p.format_names.size(), false);
  for (const Assignment& a : curve)
    for (const int f : a.format) used[static_cast<std::size_t>(f)] = true;
  std::string out;
  char buf[64];
  out += "  target     bpp   predicted loss";
  for (std::size_t f = 0; f < used.size(); ++f)
    if (used[f]) std::snprintf(buf, sizeof buf, " %11.11s", p.format_names[f].c_str()), out += buf;
  out += '\n';
  for (std::size_t i = 0; i < curve.size(); ++i) {
    const Assignment& a = curve[i];
    std::snprintf(buf, sizeof buf, "%s %6.3f %7.4f %16.6g", knee_index == i ? "*" : " ", a.target_bpp, a.bpp, a.loss);
    out += buf;
    const std::vector<double> s = format_shares(p, a);
    for (std::size_t f = 0; f < used.size(); ++f)
      if (used[f]) std::snprintf(buf, sizeof buf, " %10.1f%%", 100.0 * s[f]), out += buf;
    out += '\n';
  }
  if (knee_index) out += "* knee (Kneedle)\n";
  return out;
}

}  // namespace pq::alloc
