// SignRound's block training (pipeline/signround_block.hpp) on small random decoders: the block-loss gradient
// of every Linear against central finite differences of the forward's MSE, the kept iterate being the lowest
// batch loss (never above iteration 0, which is RTN), the layer holding exactly the kept rounding.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>

#include <pq/model/source_model.hpp>
#include <pq/model/tokens.hpp>
#include <pq/pipeline/signround_block.hpp>

#include "../model/synthetic.hpp"

using namespace pq;
using namespace pq::model;

namespace {

forward_config signround_block_config(bool moe) {
  forward_config c = test::tiny_config(moe, false);
  c.hidden = 32;
  c.intermediate = 64;
  c.moe.expert_intermediate = 32;
  c.moe.shared_expert_intermediate = 32;
  return c;
}

struct signround_block_case {
  forward_config c;
  memory_weights w;
  runner r;
  Eigen::Index len = 5;
  matrix x, y;
  layer_weights fp;
  signround_block_case(bool moe, unsigned seed)
      : c(signround_block_config(moe)), w(test::random_weights(c, seed)), r(w, c, {1, 64}) {
    const token_batch t = test::random_tokens(c, 4, len, seed + 1);
    x = r.embed(t);
    r.run_layer(r.load_layer(0), x, len);
    fp = r.load_layer(1);
    y = x;
    r.run_layer(fp, y, len);
    x += matrix::Random(x.rows(), x.cols()) * 0.05f;  // the quantized path's input differs from the fp one
  }
};

double signround_block_mse(const signround_block_case& k, const layer_weights& w) {
  matrix out = k.x;
  k.r.run_layer(w, out, k.len);
  return (out - k.y).cast<double>().squaredNorm() / static_cast<double>(out.size());
}

}  // namespace

TEST_CASE("signround block: dL/dW of every Linear matches finite differences of the block MSE") {
  for (bool moe : {false, true}) {
    CAPTURE(moe);
    signround_block_case k(moe, 11);
    std::map<std::string, int> names;
    for (const auto& [name, l] : model::linears_of(k.fp, k.c)) names[name] = 0;
    const std::vector<Eigen::Index> all{0, 1, 2, 3};
    const auto g = pipeline::block_loss_gradient(k.c, k.fp, names, k.x, k.y, k.len, all, 2);
    CHECK(g.loss == doctest::Approx(signround_block_mse(k, k.fp)).epsilon(1e-5));
    const float eps = 1e-2f;
    for (const auto& [name, unused] : names) {
      layer_weights p = k.fp, m = k.fp;
      model::linear& lp = *model::linears_of(p, k.c).at(name);
      model::linear& lm = *model::linears_of(m, k.c).at(name);
      const Eigen::Index i = lp.weight.rows() / 2, j = lp.weight.cols() / 3;
      lp.weight(i, j) += eps;
      lm.weight(i, j) -= eps;
      const double fd = (signround_block_mse(k, p) - signround_block_mse(k, m)) / (2 * eps);
      CAPTURE(name);
      CHECK(g.dW.at(name)(i, j) == doctest::Approx(fd).epsilon(0.03).scale(1e-4));
    }
  }
}

TEST_CASE("signround block: the kept iterate has the lowest batch loss and is what the layer holds") {
  for (bool moe : {false, true}) {
    CAPTURE(moe);
    signround_block_case k(moe, 21);
    for (const char* format : {"NVFP4", "MXFP4"}) {
      CAPTURE(format);
      std::map<std::string, std::unique_ptr<pipeline::signround_linear>> states;
      std::map<std::string, pipeline::signround_linear*> trained;
      for (const auto& [name, l] : model::linears_of(k.fp, k.c)) {
        std::vector<float> w(l->weight.data(), l->weight.data() + l->weight.size());
        const float amax = l->weight.cwiseAbs().maxCoeff();
        states[name] = pipeline::make_signround_linear(format, w, l->weight.rows(), l->weight.cols(), amax);
        trained[name] = states[name].get();
      }
      signround_options o;
      o.iters = 12;
      o.batch = 2;
      layer_weights q = k.fp;
      const auto t = pipeline::train_block(k.c, q, trained, k.x, k.y, k.len, o, 2);
      REQUIRE(t.losses.size() == 12);
      CHECK(t.best_loss == *std::min_element(t.losses.begin(), t.losses.end()));
      CHECK(t.best_loss <= t.first_loss);
      CHECK(t.losses[static_cast<std::size_t>(t.best_iter)] == t.best_loss);
      for (const auto& [name, l] : model::linears_of(q, k.c)) {
        const std::vector<float> d = trained.at(name)->dequantized();
        CHECK(std::equal(d.begin(), d.end(), l->weight.data()));
      }
      // zero iterations leave RTN's rounding in the layer
      std::map<std::string, std::unique_ptr<pipeline::signround_linear>> fresh;
      std::map<std::string, pipeline::signround_linear*> fresh_ptr;
      for (const auto& [name, l] : model::linears_of(k.fp, k.c)) {
        std::vector<float> w(l->weight.data(), l->weight.data() + l->weight.size());
        fresh[name] = pipeline::make_signround_linear(format, w, l->weight.rows(), l->weight.cols(),
                                                      l->weight.cwiseAbs().maxCoeff());
        fresh_ptr[name] = fresh[name].get();
      }
      o.iters = 0;
      layer_weights r0 = k.fp;
      pipeline::train_block(k.c, r0, fresh_ptr, k.x, k.y, k.len, o, 1);
      for (const auto& [name, l] : model::linears_of(r0, k.c)) {
        const auto& src = *model::linears_of(k.fp, k.c).at(name);
        std::vector<float> w(src.weight.data(), src.weight.data() + src.weight.size());
        const auto rtn = visit_format(format, [&](auto fmt) {
          using F = decltype(fmt);
          return dequantize(quantize_rtn<F>(w, src.weight.rows(), src.weight.cols(), F::tensor_scale(weight_amax(w))));
        });
        CHECK(std::equal(rtn.begin(), rtn.end(), l->weight.data()));
      }
    }
  }
}

// A real layer: tiny-llama-code's decoder layer 1 in NVFP4 and INT4, trained on 8 calibration windows of 64
// tokens. SignRound's block-output MSE over all 8 (not only the sampled batches the kept iterate was chosen
// on) must not exceed RTN's, which is where it starts; on 4 held-out windows it is reported, not bounded.
TEST_CASE("signround block: on a real layer of tiny-llama-code the block-output error is at most RTN's") {
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(PQ_MODELS_DIR) / "tiny-llama-code";
  if (!fs::exists(dir / "tokens.safetensors")) return;  // the shared test models are not on this machine
  const source_model src(dir);
  const runner r(src.weights(), src.shape(), {.threads = 2});
  const auto calib = load_tokens(dir / "tokens.safetensors", "calib", src.shape().vocab);
  const Eigen::Index len = 64;
  auto windows = [&](Eigen::Index first, Eigen::Index n) {
    token_batch t{n, len, {}};
    for (Eigen::Index b = first; b < first + n; ++b)
      for (Eigen::Index p = 0; p < len; ++p) t.ids.push_back(calib.at(b, p));
    return t;
  };
  // the inputs of layer 1 (full precision), and its output
  auto layer_input = [&](const token_batch& t) {
    matrix x = r.embed(t);
    r.run_layer(r.load_layer(0), x, len);
    return x;
  };
  const matrix x = layer_input(windows(0, 8)), xh = layer_input(windows(8, 4));
  const layer_weights fp = r.load_layer(1);
  const matrix y = pipeline::block_output(r.config(), fp, x, len, 2), yh = pipeline::block_output(r.config(), fp, xh, len, 2);
  auto mse = [&](const layer_weights& w, const matrix& in, const matrix& out) {
    const matrix o = pipeline::block_output(r.config(), w, in, len, 2);
    return (o - out).cast<double>().squaredNorm() / static_cast<double>(o.size());
  };
  for (const std::string format : {"NVFP4", "INT4_G128"}) {
    CAPTURE(format);
    std::map<std::string, std::unique_ptr<pipeline::signround_linear>> states;
    std::map<std::string, pipeline::signround_linear*> trained;
    for (const auto& [name, l] : model::linears_of(fp, r.config())) {
      std::vector<float> w(l->weight.data(), l->weight.data() + l->weight.size());
      states[name] = pipeline::make_signround_linear(format, w, l->weight.rows(), l->weight.cols(), l->weight.cwiseAbs().maxCoeff());
      trained[name] = states[name].get();
    }
    signround_options o;
    o.iters = 0;
    layer_weights rtn = fp;
    pipeline::train_block(r.config(), rtn, trained, x, y, len, o, 2);
    o.iters = 25;  // the suite stays within seconds on CI's 2 cores; the error already falls well below RTN's
    o.batch = 4;
    layer_weights sr = fp;
    const auto t0 = std::chrono::steady_clock::now();
    const auto t = pipeline::train_block(r.config(), sr, trained, x, y, len, o, 2);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double e_rtn = mse(rtn, x, y), e_sr = mse(sr, x, y);
    MESSAGE(format << " layer 1, block-output MSE: RTN " << e_rtn << ", SignRound (" << o.iters << " iters, best "
                   << t.best_iter << ") " << e_sr << "; held out: RTN " << mse(rtn, xh, yh) << ", SignRound "
                   << mse(sr, xh, yh) << "; " << secs << " s");
    CHECK(e_sr <= e_rtn);
    CHECK(t.best_loss <= t.first_loss);
  }
}
