// bench_selfcal: time of data-free calibration's generation (incremental decoder + sampling) against one
// full forward over the same number of tokens, on the test models.
// Usage: bench_selfcal [model_dir ...]   (default: both test models)
//        env PQ_BENCH_SEQUENCES (default 32), PQ_BENCH_LENGTH (default 512)
#include <pq/model/source_model.hpp>
#include <pq/pipeline/self_calibration.hpp>

#include <pq/pipeline/resources.hpp>

#include <fmt/core.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
long long peak_rss_mb() { return pq::pipeline::peak_rss_bytes() >> 20; }
long env_or(const char* name, long fallback) {
  const char* v = std::getenv(name);
  return v ? std::atol(v) : fallback;
}

void bench(const std::filesystem::path& dir, Eigen::Index sequences, Eigen::Index length) {
  using namespace pq;
  const model::source_model src(dir);
  const model::runner run(src.weights(), src.shape());
  pipeline::self_calibration_options o;
  o.sequences = sequences;
  o.length = length;
  o.start_token = pipeline::start_token(src.dir().config_json()).value_or(0);
  auto t0 = std::chrono::steady_clock::now();
  const model::token_batch gen = pipeline::generate_calibration(run, o);
  const double g = seconds_since(t0);
  t0 = std::chrono::steady_clock::now();
  model::matrix h = run.embed(gen);
  run.run_layers(h, gen.length);
  const double f = seconds_since(t0);
  fmt::print("{:<22} generate {}x{}: {:.2f} s ({:.0f} tokens/s); one forward over them: {:.2f} s; peak RSS {} MiB\n",
             dir.filename().string(), sequences, length, g, static_cast<double>(gen.tokens()) / g, f, peak_rss_mb());
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::filesystem::path> dirs;
  for (int i = 1; i < argc; ++i) dirs.emplace_back(argv[i]);
  if (dirs.empty())
    for (const char* m : {"tiny-llama-code", "tiny-qwen2moe-code"})
      dirs.push_back(std::filesystem::path(__FILE__).parent_path() / "../../shared/models" / m);  // as bench_quant
  for (const auto& d : dirs) bench(d, env_or("PQ_BENCH_SEQUENCES", 32), env_or("PQ_BENCH_LENGTH", 512));
}
