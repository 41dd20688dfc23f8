// pq/pipeline/report.hpp: report.json, what `pq quantize` did and measured, written inside the checkpoint.
// Each stage's result goes in under its own key; this header states the keys that describe the shipped
// assignment and the options it was made with.
#pragma once
#include <chrono>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <pq/pipeline/inputs.hpp>
#include <pq/pipeline/options.hpp>
#include <pq/pipeline/selection.hpp>

namespace pq::pipeline {

using stage_clock = std::chrono::steady_clock;
inline double seconds_since(stage_clock::time_point t0) {
  return std::chrono::duration<double>(stage_clock::now() - t0).count();
}

// The shipped assignment: bits, counts, per-Linear formats, the Pareto curve with what was measured on it.
inline void report_assignment(nlohmann::json& r, const quantize_options& o, const job_inputs& in, const selection& s,
                              const std::vector<std::string>& formats) {
  r["model"] = o.model->string();
  r["options"] = options_json(o);
  r["formats"] = in.formats.names();
  r["format_table"] = in.formats.json();
  r["rounding"] = std::string(rounding_name(*o.method));
  r["target_bpp"] = *o.target_bits;
  r["achieved_bpp"] = s.bpp_of(s.chosen());
  r["predicted_loss"] = s.loss_of(s.chosen());
  std::map<std::string, std::int64_t> counts;
  nlohmann::json assignment;
  for (std::size_t i = 0; i < formats.size(); ++i) {
    ++counts[formats[i]];
    assignment[in.profile.linears[i].name] = formats[i];
  }
  r["counts"] = counts;
  r["assignment"] = assignment;
  nlohmann::json pareto = nlohmann::json::array();
  for (const auto& a : s.curve()) {
    nlohmann::json p{{"target_bpp", a.target_bpp}, {"bpp", a.bpp}, {"predicted", a.loss}};
    if (const auto it = s.kl_at().find(a.bpp); it != s.kl_at().end()) p["kl_selection"] = it->second;
    pareto.push_back(p);
  }
  r["pareto"] = pareto;
  r["knee"] = s.knee() ? nlohmann::json(s.curve()[*s.knee()].bpp) : nlohmann::json(nullptr);
}

// --rounding signround | gptq+signround: the rounding each unit shipped with in its chosen format (SignRound's
// or the per-Linear one it did not beat), from the cost table's signround choices; "none" for a format that
// rounds nothing.
inline nlohmann::json unit_roundings(const nlohmann::json& signround, const job_inputs& in, const std::vector<int>& chosen) {
  nlohmann::json j = nlohmann::json::object();
  for (std::size_t ui = 0; ui < chosen.size(); ++ui) {
    const auto& u = in.profile.units[ui].name;
    const auto& f = in.formats[static_cast<std::size_t>(chosen[ui])].name;
    j[u] = signround.contains(f) && signround[f].contains(u) ? signround[f][u]["rounding"] : nlohmann::json("none");
  }
  return j;
}

}  // namespace pq::pipeline
