// bench_forward: host tokens/s and peak memory of the reference forward, the KL evaluation and calibration.
// Usage: bench_forward [--sensitivity] [model_dir ...]   (default: both test models)
//        env PQ_BENCH_SEQUENCES (default 16)
// --sensitivity: for every quantizable Linear alone in INT4_G128 (RTN), the measured KL on 8 eval
// sequences against the KL predicted from calibration statistics (Fisher, both label kinds) and
// the unweighted output error; prints the Spearman rank correlations.
#include <pq/formats/bundle.hpp>
#include <pq/model/calibration.hpp>
#include <pq/quant/rtn.hpp>
#include <pq/model/evaluation.hpp>
#include <pq/model/source_model.hpp>

#include <pq/pipeline/resources.hpp>

#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <numeric>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
long long peak_rss_mb() { return pq::pipeline::peak_rss_bytes() >> 20; }

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

std::vector<double> ranks(const std::vector<double>& v) {
  std::vector<std::size_t> order(v.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return v[a] < v[b]; });
  std::vector<double> r(v.size());
  for (std::size_t i = 0; i < order.size(); ++i) r[order[i]] = static_cast<double>(i);
  return r;
}
double spearman(const std::vector<double>& a, const std::vector<double>& b) {
  const std::vector<double> ra = ranks(a), rb = ranks(b);
  const double mean = (static_cast<double>(a.size()) - 1) / 2;
  double num = 0, da = 0, db = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    num += (ra[i] - mean) * (rb[i] - mean);
    da += (ra[i] - mean) * (ra[i] - mean);
    db += (rb[i] - mean) * (rb[i] - mean);
  }
  return num / std::sqrt(da * db);
}

void sensitivity(const std::filesystem::path& dir, Eigen::Index sequences) {
  using namespace pq::model;
  const source_model model(dir);
  const runner r(model.weights(), model.shape());
  const token_batch calib = load_tokens(dir / "tokens.safetensors", "calib", model.shape().vocab).first(sequences);
  const token_batch eval = load_tokens(dir / "tokens.safetensors", "eval", model.shape().vocab).first(8);
  const calibration_stats next = calibrate(r, calib, {.gradient_sequences = sequences, .labels = fisher_labels::next_token});
  const calibration_stats sampled = calibrate(r, calib, {.gradient_sequences = sequences, .labels = fisher_labels::sampled});
  const reference_cache cache(r, eval);
  std::vector<double> measured, fisher_next, fisher_sampled, unweighted;
  for (int layer = 0; layer < model.shape().layers; ++layer)
    for (const std::string& name : linear_names(model.shape(), layer)) {
      const std::vector<std::int64_t> shape = model.weights().shape_of(name + ".weight");
      const matrix w = load_matrix(model.weights(), name + ".weight", shape[0], shape[1]);
      const auto q = pq::quantize_rtn<pq::INT4_G128>(std::span<const float>(w.data(), static_cast<std::size_t>(w.size())),
                                                     w.rows(), w.cols());
      const std::vector<float> deq = pq::dequantize(q);
      const matrix wq = Eigen::Map<const matrix>(deq.data(), w.rows(), w.cols());
      substituted_weights s(model.weights());
      s.substitute(name, wq);
      measured.push_back(cache.evaluate(s).kl);
      fisher_next.push_back(predicted_kl(next.linears.at(name), wq - w, next.tokens));
      fisher_sampled.push_back(predicted_kl(sampled.linears.at(name), wq - w, sampled.tokens));
      unweighted.push_back(output_error(*next.linears.at(name).input, wq - w));
    }
  fmt::print("{}: {} Linears in INT4_G128, statistics from {} calibration sequences, KL on {} eval sequences\n",
             dir.filename().string(), measured.size(), calib.sequences, eval.sequences);
  fmt::print("  Spearman(predicted, measured KL): Fisher next-token {:.3f}, Fisher sampled {:.3f}, unweighted {:.3f}\n",
             spearman(fisher_next, measured), spearman(fisher_sampled, measured), spearman(unweighted, measured));
  fmt::print("  sum of measured KL {:.4e}, sum of predicted (next-token) {:.4e}\n",
             std::accumulate(measured.begin(), measured.end(), 0.0), std::accumulate(fisher_next.begin(), fisher_next.end(), 0.0));
}

}  // namespace

int main(int argc, char** argv) {
  const char* env = std::getenv("PQ_BENCH_SEQUENCES");
  const Eigen::Index sequences = env ? std::atoi(env) : 16;
  std::vector<std::filesystem::path> dirs;
  bool sensitivity_mode = false;
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--sensitivity") sensitivity_mode = true;
    else dirs.emplace_back(argv[i]);
  }
  if (dirs.empty()) {
    const std::filesystem::path models = std::filesystem::path(__FILE__).parent_path() / ".." / ".." / "shared" / "models";
    dirs = {models / "tiny-llama-code", models / "tiny-qwen2moe-code"};
  }
  try {
    for (const auto& d : dirs) sensitivity_mode ? sensitivity(d, sequences) : bench(d, sequences);
  } catch (const std::exception& e) {
    fmt::print(stderr, "bench_forward: {}\n", e.what());
    return 1;
  }
}
