// pq/bench/bench.hpp: the per-format kernel benchmark behind `pq bench`: what is measured (rows), how a
// row's rates are derived, and the table / JSON a run prints. The host measurements are in
// pq/bench/host.hpp, the CUDA ones in pq/bench/cuda.cuh (compiled only where nvcc is).
//
// Every row is one kernel of one format on one device: quantize+pack (the unit amax precomputed),
// dequantize, the RTN + 32-candidate scale sweep, the unit amax, and the device's copy bandwidth measured in
// the same run on the same buffers' size (device-to-device memcpy on a GPU, a streaming memcpy on the CPU).
// Bytes moved count each input read once and each output written once, as the roofline does.
#pragma once
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include <pq/core/widen.hpp>
#include <pq/formats/bundle.hpp>
#include <pq/quant/error.hpp>
#include <pq/quant/packed.hpp>

namespace pq::bench {

enum class device { cpu, cuda };

struct options {
  std::vector<std::string> formats;  // empty: every packable format
  index_t rows = 0, cols = 0;        // 0: the device's default shape
  weight_dtype dtype = weight_dtype::bf16;
  int repeats = 0;  // timed runs per kernel, median reported (0: the device's default)
  int threads = 0;  // host threads (0: all cores)
  int candidates = 32;
};

// Default shapes: large enough that the data is several times any cache (16384^2 bf16 is 512 MiB, 8x the
// H200's L2); the CPU's smaller one keeps a run of every format near a minute on two cores.
inline options with_defaults(options o, device d) {
  if (o.rows <= 0 || o.cols <= 0) {
    o.rows = d == device::cuda ? 16384 : 4096;
    o.cols = d == device::cuda ? 16384 : 4096;
  }
  if (o.repeats <= 0) o.repeats = d == device::cuda ? 20 : 3;
  return o;
}

struct row {
  std::string device_name;  // "cpu (2 threads)", "NVIDIA H200", ...
  std::string format;       // "" for the copy row
  std::string kernel;       // copy | amax | quantize+pack | dequantize | sweep | rtn
  std::string dtype;
  index_t rows = 0, cols = 0;
  double seconds = 0;  // median of the timed runs
  double bytes = 0;    // moved per run: read + written
  double copy_gbps = 0;  // the same run's copy bandwidth on this device
  double gweights_per_s() const { return seconds > 0 ? static_cast<double>(rows * cols) / seconds * 1e-9 : 0.0; }
  double gbps() const { return seconds > 0 ? bytes / seconds * 1e-9 : 0.0; }
  double copy_fraction() const { return copy_gbps > 0 ? gbps() / copy_gbps : 0.0; }
};

constexpr std::string_view dtype_name(weight_dtype t) {
  return t == weight_dtype::bf16 ? "bf16" : t == weight_dtype::fp16 ? "fp16" : "fp32";
}
inline weight_dtype parse_dtype(std::string_view s) {
  for (weight_dtype t : {weight_dtype::bf16, weight_dtype::fp16, weight_dtype::fp32})
    if (dtype_name(t) == s) return t;
  throw quant_error("unknown --dtype '" + std::string(s) + "'; valid: bf16, fp16, fp32");
}

// The formats a run measures: the named ones (each must be a packable format), or all of them.
inline std::vector<std::string> selected_formats(const options& o) {
  std::vector<std::string> all;
  for (auto n : format_names<packable_formats>()) all.emplace_back(n);
  if (o.formats.empty()) return all;
  for (const auto& f : o.formats)
    if (std::find(all.begin(), all.end(), f) == all.end()) {
      std::string valid;
      for (const auto& a : all) valid += (valid.empty() ? "" : ", ") + a;
      throw unknown_format("pq bench: '" + f + "' is not a format with a packed layout; valid: " + valid);
    }
  return o.formats;
}

// "A,B,,C" -> {"A", "B", "C"}: the --formats list of the bench programs.
inline std::vector<std::string> comma_list(std::string_view v) {
  std::vector<std::string> out;
  for (std::size_t a = 0; a < v.size();) {
    const std::size_t b = std::min(v.find(',', a), v.size());
    if (b > a) out.emplace_back(v.substr(a, b - a));
    a = b + 1;
  }
  return out;
}

// Bytes of the stored tensors of F for one [rows, cols] Linear (the output of quantize+pack).
template <Format F> double packed_bytes(index_t rows, index_t cols) { return static_cast<double>(stored_bytes<F>(rows, cols)); }

// Median seconds of `repeats` runs of fn after one warm-up run.
template <class Fn>
double median_seconds(int repeats, Fn&& fn) {
  fn();
  std::vector<double> t;
  for (int i = 0; i < repeats; ++i) {
    const auto a = std::chrono::steady_clock::now();
    fn();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

inline std::string table(const std::vector<row>& rows) {
  std::string s;
  char line[256];
  std::snprintf(line, sizeof line, "%-22s %-14s %-14s %-5s %12s %12s %10s %9s\n", "device", "format", "kernel", "dtype",
                "shape", "G weights/s", "GB/s", "of copy");
  s += line;
  for (const row& r : rows) {
    const std::string shape = std::to_string(r.rows) + "x" + std::to_string(r.cols);
    std::snprintf(line, sizeof line, "%-22s %-14s %-14s %-5s %12s %12.3f %10.1f %8.1f%%\n", r.device_name.c_str(),
                  r.format.empty() ? "-" : r.format.c_str(), r.kernel.c_str(), r.dtype.c_str(), shape.c_str(),
                  r.kernel == "copy" ? 0.0 : r.gweights_per_s(), r.gbps(), 100.0 * r.copy_fraction());
    s += line;
  }
  return s;
}

inline nlohmann::json to_json(const std::vector<row>& rows) {
  nlohmann::json a = nlohmann::json::array();
  for (const row& r : rows)
    a.push_back({{"device", r.device_name}, {"format", r.format}, {"kernel", r.kernel}, {"dtype", r.dtype},
                 {"rows", r.rows}, {"cols", r.cols}, {"seconds", r.seconds}, {"bytes", r.bytes},
                 {"gweights_per_s", r.gweights_per_s()}, {"gb_per_s", r.gbps()}, {"copy_gb_per_s", r.copy_gbps},
                 {"copy_fraction", r.copy_fraction()}});
  return a;
}

// The CUDA rows (pq/bench/cuda.cuh, compiled into a CUDA translation unit of the program); throws
// pq::error with the reason when there is no usable device.
std::vector<row> run_cuda(const options& o);

}  // namespace pq::bench
