// pq/pipeline/quantize.hpp: `pq quantize`, the whole job, as its stages in order:
//   options.hpp     what the job takes
//   inputs.hpp      1. every input opened and checked before any compute; self-calibration
//   cost_table.hpp  2. calibration statistics and the cost table, layer by layer
//   selection.hpp   3. allocation over a Pareto sweep; 4. selection on measured KL, and polish
//   evaluation.hpp  5. the shipped assignment measured on the whole evaluation split
//   export.hpp      6. the compressed-tensors checkpoint, with
//   report.hpp         report.json and pareto.svg inside it
// Surrogate costs only propose candidates; what ships is chosen on measured KL of the exact weights that
// the checkpoint holds.
#pragma once
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include <pq/alloc/svg.hpp>
#include <pq/pipeline/cost_table.hpp>
#include <pq/pipeline/evaluation.hpp>
#include <pq/pipeline/export.hpp>
#include <pq/pipeline/inputs.hpp>
#include <pq/pipeline/options.hpp>
#include <pq/pipeline/progress.hpp>
#include <pq/pipeline/report.hpp>
#include <pq/pipeline/resources.hpp>
#include <pq/pipeline/selection.hpp>

namespace pq::pipeline {

// pareto.svg's title: the model, the menu, the budget and the rounding.
inline std::string plot_title(const quantize_options& o) {
  std::string menu;
  for (const auto& f : *o.formats) menu += (menu.empty() ? "" : ",") + f;
  char bits[32];
  std::snprintf(bits, sizeof bits, "%g", *o.target_bits);
  const auto dir = o.model->has_filename() ? o.model->filename() : o.model->parent_path().filename();
  return dir.string() + ": " + menu + " at " + bits + " bits per weight, " + std::string(rounding_cli_name(*o.method));
}

inline nlohmann::json run_quantize(const quantize_options& o, std::FILE* log = stderr) {
  const auto t_start = stage_clock::now();
  nlohmann::json report;
  auto& timings = report["timings_s"];

  job_inputs in = open_inputs(o, log);
  if (in.self) timings["self_calibration"] = self_calibrate(in, log);

  auto t0 = stage_clock::now();
  const cost_table table = build_cost_table(in, o, log);
  report["work_dir"] = table.store->dir().string();
  report["cost_table"] = table.summary;
  timings["calibration_and_cost_table"] = seconds_since(t0);

  t0 = stage_clock::now();
  selection sel(table.problem, {*o.target_bits, *o.pareto, *o.polish_trials});
  sel.allocate();
  timings["allocation"] = seconds_since(t0);

  if (in.eval) {
    const model::reference_cache select(*in.runner, in.eval->first(selection_window_count(*in.eval, *o.selection_windows)));
    in.tokens["selection"] = "the first " + std::to_string(select.tokens().sequences) + " evaluation windows";
    progress bar("validate", static_cast<long long>(sel.candidate_count()) + *o.polish_trials, log);
    sel.validate([&](const std::vector<int>& a) { return measure_assignment(select, in, table, a).kl; },
                 [&] { bar.advance(); });
    report["validation"] = sel.measurements();
    timings["validation"] = bar.finish();
  } else {
    std::fprintf(log, "warning: no --eval tokens: the allocation is not validated on measured KL\n");
    timings["validation"] = 0.0;
  }

  if (in.eval) {
    progress bar("evaluate", 1, log);
    const evaluation_result e = evaluate_shipped(in, table, sel.chosen());
    report["source"] = {{"nll", e.source_nll}};
    report["shipped"] = {{"kl", e.kl}, {"nll", e.nll}};
    timings["evaluation"] = bar.finish();
  }

  t0 = stage_clock::now();
  const std::vector<std::string> formats = linear_formats(in.profile, in.formats, sel.chosen());
  report["tokens"] = in.tokens;
  report_assignment(report, o, in, sel, formats);
  if (!table.signround.is_null()) report["unit_rounding"] = unit_roundings(table.signround, in, sel.chosen());
  export_checkpoint(in, table, formats, o, [&] {
    timings["export"] = seconds_since(t0);
    timings["total"] = seconds_since(t_start);
    report["peak_rss_bytes"] = peak_rss_bytes();
    return std::vector<std::pair<std::string, std::string>>{
        {"report.json", report.dump(2) + "\n"}, {"pareto.svg", alloc::pareto_svg(sel.plot(plot_title(o)))}};
  }, log);
  timings["export"] = seconds_since(t0);
  timings["total"] = seconds_since(t_start);
  return report;
}

}  // namespace pq::pipeline
