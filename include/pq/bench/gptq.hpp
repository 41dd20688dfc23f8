// pq/bench/gptq.hpp: the GPTQ rows of `pq bench --algo gptq`: what is measured and how it is printed. Each row
// is one step on the device (wall clock around synchronised work, median of repeats) and, where the run
// measured it, the host path on the same data in the same run, with the speedup. The device measurements
// are in pq/bench/gptq.cuh (pq::cuda_linalg), defined into a program by one CUDA translation unit.
#pragma once
#include <cstdio>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <pq/config.hpp>

namespace pq::bench {

struct gptq_options {
  std::vector<std::string> formats{"NVFP4"};  // formats of the GPTQ rows
  int repeats = 3;                            // device runs per row, median reported
  bool host = true;                           // also time the host path (fp64 factor, Eigen GPTQ) on the same data
  int experts = 128;                          // the MoE case: this many 768x2048 experts, batched and looped
  int threads = 0;                            // host threads (0: all cores)
};

struct gptq_row {
  std::string device_name;
  std::string what;    // "gptq", "gptq+sweep", "factor", "H = X^T X (syrk)", "sgemm X^T X", "costs", ...
  std::string format;  // "" where no format is involved
  std::string shape;   // e.g. "4096x4096", "128 x 768x2048"
  double device_ms = 0, host_ms = 0;  // host_ms 0: not measured
  std::string note;    // agreement, rates
  double speedup() const { return device_ms > 0 && host_ms > 0 ? host_ms / device_ms : 0.0; }
};

inline std::string gptq_table(const std::vector<gptq_row>& rows) {
  std::string s;
  char line[512];
  std::snprintf(line, sizeof line, "%-20s %-22s %-10s %-16s %11s %11s %9s  %s\n", "device", "what", "format", "shape",
                "device ms", "host ms", "speedup", "note");
  s += line;
  for (const auto& r : rows) {
    char host[32] = "-", speed[32] = "-";
    if (r.host_ms > 0) {
      std::snprintf(host, sizeof host, "%.1f", r.host_ms);
      std::snprintf(speed, sizeof speed, "%.1fx", r.speedup());
    }
    std::snprintf(line, sizeof line, "%-20s %-22s %-10s %-16s %11.3f %11s %9s  %s\n", r.device_name.c_str(),
                  r.what.c_str(), r.format.empty() ? "-" : r.format.c_str(), r.shape.c_str(), r.device_ms, host, speed,
                  r.note.c_str());
    s += line;
  }
  return s;
}

inline nlohmann::json gptq_json(const std::vector<gptq_row>& rows) {
  nlohmann::json a = nlohmann::json::array();
  for (const auto& r : rows)
    a.push_back({{"device", r.device_name}, {"what", r.what}, {"format", r.format}, {"shape", r.shape},
                 {"device_ms", r.device_ms}, {"host_ms", r.host_ms}, {"speedup", r.speedup()}, {"note", r.note}});
  return a;
}

// The GPTQ rows on the GPU (pq/bench/gptq.cuh, compiled into a CUDA translation unit of the program); throws
// pq::error with the reason when there is no usable device.
std::vector<gptq_row> run_gptq_cuda(const gptq_options& o);

}  // namespace pq::bench
