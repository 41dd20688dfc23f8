// pq/pipeline/export.hpp: stage 6 of `pq quantize`: the compressed-tensors checkpoint. Nothing is rounded
// here: the cost table stored every rounding as the packed tensors that ship, and export copies the chosen
// ones, so what was priced and measured is bit for bit what the checkpoint holds.
#pragma once
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include <pq/io/export.hpp>
#include <pq/pipeline/cost_table.hpp>
#include <pq/pipeline/inputs.hpp>
#include <pq/pipeline/options.hpp>
#include <pq/pipeline/progress.hpp>

namespace pq::pipeline {

// Writes the checkpoint (temporary directory renamed into place by finish); `files()` is called last, once
// every tensor is written, for pq's own files (report.json, pareto.svg) as name -> content.
inline void export_checkpoint(const job_inputs& in, const cost_table& t, const std::vector<std::string>& formats,
                              const quantize_options& o, const std::function<std::vector<std::pair<std::string, std::string>>()>& files,
                              std::FILE* log) {
  io::export_options eo;
  eo.max_shard_bytes = *o.max_shard_bytes;
  eo.force = *o.force;
  io::ct_export ex(in.src->dir(), in.profile, formats, *o.out, eo);
  progress bar("export", static_cast<long long>(in.profile.linears.size()), log);
  for (std::size_t i = 0; i < in.profile.linears.size(); ++i) {
    if (ex.expects(i)) ex.write_linear(i, t.store->tensors(i, formats[i]));  // else the source's own tensors ship
    bar.advance();
  }
  for (const auto& [name, content] : files()) ex.add_file(name, content);
  ex.finish();
  bar.finish();
}

}  // namespace pq::pipeline
