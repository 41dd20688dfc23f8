// bench_forward: host tokens/s and peak memory of the reference forward, the KL evaluation and calibration.
// Usage: bench_forward [model_dir ...]   (default: both test models)   env PQ_BENCH_SEQUENCES (default 16)
#include <pq/model/calibration.hpp>
#include <pq/model/evaluation.hpp>
#include <pq/model/source_model.hpp>

#include <fmt/core.h>
#include <sys/resource.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
long peak_rss_mb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss / 1024;
}

void bench(const std::filesystem::path& dir, Eigen::Index sequences) {
  using namespace pq::model;
  const source_model model(dir);
  const run_options opt;
  const runner r(model.weights(), model.shape(), opt);
  const token_batch eval = load_tokens(dir / "tokens.safetensors", "eval", model.shape().vocab).first(sequences);
  const token_batch calib = load_tokens(dir / "tokens.safetensors", "calib", model.shape().vocab).first(sequences);
  fmt::print("{} ({} threads, {} sequences x {} tokens)\n", dir.filename().string(), opt.threads, eval.sequences,
             eval.length);

  auto t0 = std::chrono::steady_clock::now();
  matrix h = r.embed(eval);
  r.run_layers(h, eval.length);
  const double fwd = seconds_since(t0);
  fmt::print("  forward (layers, no lm_head)      {:8.1f} tokens/s   peak RSS {} MB\n", static_cast<double>(eval.tokens()) / fwd,
             peak_rss_mb());

  t0 = std::chrono::steady_clock::now();
  const reference_cache cache(r, eval);
  const double ref = seconds_since(t0);
  fmt::print("  reference cache + NLL             {:8.1f} tokens/s   NLL {:.4f}   peak RSS {} MB\n",
             static_cast<double>(eval.tokens()) / ref, cache.reference().nll, peak_rss_mb());

  for (int layer : {0, model.shape().layers - 1}) {
    substituted_weights s(model.weights());
    const std::string name = layer_prefix(layer) + ".self_attn.o_proj";
    matrix w = load_matrix(model.weights(), name + ".weight", model.shape().hidden, model.shape().heads * model.shape().head_dim);
    w *= 0.99f;
    s.substitute(name, w);
    t0 = std::chrono::steady_clock::now();
    const eval_result e = cache.evaluate(s);
    fmt::print("  evaluate, first change in layer {} {:8.3f} s         KL {:.3e}\n", layer, seconds_since(t0), e.kl);
  }

  t0 = std::chrono::steady_clock::now();
  const calibration_stats st = calibrate(r, calib, {.gradient_sequences = sequences});
  const double cal = seconds_since(t0);
  fmt::print("  calibrate (forward+XtX+backward)  {:8.1f} tokens/s   {} Linears   peak RSS {} MB\n",
             static_cast<double>(calib.tokens()) / cal, st.linears.size(), peak_rss_mb());
}

}  // namespace

int main(int argc, char** argv) {
  const char* env = std::getenv("PQ_BENCH_SEQUENCES");
  const Eigen::Index sequences = env ? std::atoi(env) : 16;
  std::vector<std::filesystem::path> dirs;
  for (int i = 1; i < argc; ++i) dirs.emplace_back(argv[i]);
  if (dirs.empty()) {
    const std::filesystem::path models = std::filesystem::path(__FILE__).parent_path() / ".." / ".." / "shared" / "models";
    dirs = {models / "tiny-llama-code", models / "tiny-qwen2moe-code"};
  }
  try {
    for (const auto& d : dirs) bench(d, sequences);
  } catch (const std::exception& e) {
    fmt::print(stderr, "bench_forward: {}\n", e.what());
    return 1;
  }
}
