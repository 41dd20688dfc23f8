// `pq bench`: the per-format kernel benchmark (pq/bench/): G weights/s, GB/s moved and the fraction of the
// copy bandwidth measured in the same run, per format and kernel, on the CPU and, where pq was built with
// CUDA and a GPU is present, on the GPU.
#pragma once
#include <fstream>
#include <memory>
#include <optional>

#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include <pq/bench/gptq.hpp>
#include <pq/bench/host.hpp>

#include "options_cli.hpp"

namespace pq::cli {

struct bench_request {
  std::string device;  // "", cpu or cuda; "" runs both (cuda where available)
  std::string formats, shape, dtype = "bf16", json, algo = "kernels";
  int repeats = 0, threads = 0, candidates = 32;
};

inline void bench(const bench_request& r) {
  bench::options o;
  for (std::size_t a = 0; a < r.formats.size();) {
    const std::size_t b = std::min(r.formats.find(',', a), r.formats.size());
    if (b > a) o.formats.push_back(r.formats.substr(a, b - a));
    a = b + 1;
  }
  if (r.algo == "gptq") {  // the GPTQ rows (pq/bench/gptq.hpp): device vs host in the same run
    bench::gptq_options g;
    if (!o.formats.empty()) g.formats = o.formats;
    if (r.repeats > 0) g.repeats = r.repeats;
    g.threads = r.threads;
#if PQ_BENCH_CUDA
    const auto rows = bench::run_gptq_cuda(g);
    fmt::print("{}", bench::gptq_table(rows));
    if (!r.json.empty()) std::ofstream(r.json) << bench::gptq_json(rows).dump(2) << "\n";
    return;
#else
    throw quant_error("pq bench --algo gptq: this pq was built without CUDA");
#endif
  }
  if (!r.shape.empty()) {
    const auto x = r.shape.find('x');
    try {
      if (x == std::string::npos) throw std::invalid_argument("no x");
      o.rows = std::stoll(r.shape.substr(0, x));
      o.cols = std::stoll(r.shape.substr(x + 1));
    } catch (const std::logic_error&) {
      throw quant_error("--shape '" + r.shape + "': expected ROWSxCOLS, e.g. 8192x8192");
    }
    if (o.rows <= 0 || o.cols <= 0) throw quant_error("--shape '" + r.shape + "': rows and columns must be positive");
  }
  o.dtype = bench::parse_dtype(r.dtype);
  o.repeats = r.repeats;
  o.threads = r.threads;
  o.candidates = r.candidates;
  (void)bench::selected_formats(o);  // an unknown format fails before anything runs
  // Each format's shape must be one it accepts.
  if (o.rows > 0)
    for (const auto& f : bench::selected_formats(o))
      visit_format<packable_formats>(f, [&]<class F>(F) { require_accepts<F>(o.rows, o.cols, "--shape"); });

  std::vector<bench::row> rows;
  if (r.device.empty() || r.device == "cuda") {
#if PQ_BENCH_CUDA
    try {
      rows = bench::run_cuda(o);
    } catch (const pq::error& e) {
      if (r.device == "cuda") throw;
      fmt::print("no cuda rows: {}\n", e.what());
    }
#else
    const char* why = "this pq was built without CUDA (nvcc was not found when it was configured)";
    if (r.device == "cuda") throw quant_error(std::string("pq bench --device cuda: ") + why);
    fmt::print("no cuda rows: {}\n", why);
#endif
  }
  if (r.device.empty() || r.device == "cpu") {
    const auto cpu = bench::run_cpu(o);
    rows.insert(rows.end(), cpu.begin(), cpu.end());
  }
  fmt::print("{}", bench::table(rows));
  if (!r.json.empty()) {
    std::ofstream f(r.json);
    f << bench::to_json(rows).dump(2) << "\n";
    if (!f) throw quant_error("cannot write " + r.json);
  }
}

inline void add_bench_command(CLI::App& app) {
  auto r = std::make_shared<bench_request>();
  auto* cmd = app.add_subcommand("bench", "Per-format kernel benchmark: quantize+pack, dequantize, sweep vs copy bandwidth");
  add_example(*cmd, "pq bench --device cpu --formats NVFP4,MXFP4 --shape 4096x4096 --json bench.json");
  cmd->add_option("--device", r->device, "cpu | cuda (default: both, cuda where available)")
      ->check(CLI::IsMember({"cpu", "cuda"}));
  cmd->add_option("--formats", r->formats, "Formats, comma separated (default: every format with a packed layout)");
  cmd->add_option("--shape", r->shape, "ROWSxCOLS of the benchmark matrix (default: 4096x4096 cpu, 16384x16384 cuda)");
  cmd->add_option("--dtype", r->dtype, "Input weights: bf16 | fp16 | fp32")->capture_default_str();
  cmd->add_option("--repeats", r->repeats, "Timed runs per kernel, median reported (default: 3 cpu, 20 cuda)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--threads", r->threads, "CPU threads (0: all cores)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--candidates", r->candidates, "Scale-sweep candidates")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--json", r->json, "Also write the rows as JSON to FILE");
  cmd->add_option("--algo", r->algo, "kernels | gptq (device GPTQ, statistics and costs vs the host)")
      ->check(CLI::IsMember({"kernels", "gptq"}))->capture_default_str();
  cmd->callback([r] { bench(*r); });
}

}  // namespace pq::cli
