// pq/pipeline/evaluation.hpp: how `pq quantize` measures an assignment: the cost table's stored roundings,
// dequantized one layer at a time, run through the forward against the source's cached outputs. Selection
// measures on the first windows of the evaluation split (stage 4); stage 5 measures the shipped assignment
// on all of it.
#pragma once
#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include <pq/model/evaluation.hpp>
#include <pq/pipeline/cost_table.hpp>
#include <pq/pipeline/inputs.hpp>
#include <pq/pipeline/rounded_store.hpp>

namespace pq::pipeline {

// The format name of every Linear of the profile, from one format index per decision unit.
inline std::vector<std::string> linear_formats(const model::profile& p, const format_table& formats,
                                               const std::vector<int>& unit_formats) {
  std::vector<std::string> out(p.linears.size());
  for (std::size_t ui = 0; ui < p.units.size(); ++ui)
    for (int m : p.units[ui].members) out[static_cast<std::size_t>(m)] = formats[static_cast<std::size_t>(unit_formats[ui])].name;
  return out;
}

// Per Linear, the format whose stored rounding it ships in under one format index per decision unit; none where
// the source's own weight ships (format_table::keeps).
inline std::vector<std::optional<std::string>> stored_roundings(const model::profile& p, const format_table& formats,
                                                                const std::vector<int>& unit_formats) {
  std::vector<std::optional<std::string>> out(p.linears.size());
  for (std::size_t ui = 0; ui < p.units.size(); ++ui)
    for (int m : p.units[ui].members) {
      const auto fi = static_cast<std::size_t>(unit_formats[ui]);
      if (!formats.keeps(static_cast<std::size_t>(m), fi)) out[static_cast<std::size_t>(m)] = formats[fi].name;
    }
  return out;
}

// Measured KL and NLL of an assignment against a reference cache (replayed from the first changed layer).
inline model::eval_result measure_assignment(const model::reference_cache& ref, const job_inputs& in, const cost_table& t,
                                             const std::vector<int>& unit_formats) {
  const rounded_weights w(in.src->weights(), in.profile, *t.store, stored_roundings(in.profile, in.formats, unit_formats));
  return ref.evaluate(w, w.first_changed(in.src->shape().layers));
}

// The windows selection measures on: the first `requested` of the evaluation split, at most half of it.
inline Eigen::Index selection_window_count(const model::token_batch& eval, int requested) {
  return std::max<Eigen::Index>(1, std::min<Eigen::Index>(requested, eval.sequences / 2));
}

struct evaluation_result {
  double source_nll = 0, kl = 0, nll = 0;
};

// Stage 5: the shipped assignment on the whole evaluation split.
inline evaluation_result evaluate_shipped(const job_inputs& in, const cost_table& t, const std::vector<int>& unit_formats) {
  const model::reference_cache ref(*in.runner, *in.eval);
  const auto shipped = measure_assignment(ref, in, t, unit_formats);
  return {ref.reference().nll, shipped.kl, shipped.nll};
}

}  // namespace pq::pipeline
