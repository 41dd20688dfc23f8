// KL on a trained model: 0 for the unchanged or losslessly stored model, and it grows as one Linear
// is stored in a coarser format (dequantized exactly as a checkpoint reader would).
#include <pq/formats/bundle.hpp>
#include <pq/model/evaluation.hpp>
#include <pq/model/source_model.hpp>
#include <pq/quant/rtn.hpp>

#include <doctest/doctest.h>

using namespace pq::model;

namespace {
template <class F>
matrix round_trip(const matrix& w) {
  const std::vector<float> v = pq::dequantize(pq::quantize_rtn<F>(std::span<const float>(w.data(), static_cast<std::size_t>(w.size())), w.rows(), w.cols()));
  return Eigen::Map<const matrix>(v.data(), w.rows(), w.cols());
}
}  // namespace

TEST_CASE("tiny-llama-code: KL is 0 for the source and BF16, and grows from MXFP8_E4M3 to MXFP6_E2M3 to MXFP4") {
  const auto dir = std::filesystem::path(PQ_MODELS_DIR) / "tiny-llama-code";
  if (!std::filesystem::exists(dir / "config.json")) {
    MESSAGE("skipped: " << dir.string() << " is absent");
    return;
  }
  const source_model model(dir);
  const weight_provider& ckpt = model.weights();
  const runner r(ckpt, model.shape());
  const reference_cache cache(r, load_tokens(dir / "tokens.safetensors", "eval", model.shape().vocab).first(2));
  CHECK(cache.evaluate(ckpt, 0).kl == 0.0);

  const std::string name = "model.layers.3.mlp.down_proj";
  const matrix w = load_matrix(ckpt, name + ".weight", model.shape().hidden, model.shape().intermediate);
  auto kl_with = [&](const matrix& q) {
    substituted_weights s(ckpt);
    s.substitute(name, q);
    return cache.evaluate(s);
  };
  CHECK(kl_with(round_trip<pq::BF16>(w)).kl == 0.0);  // the checkpoint is bf16: lossless
  // Same block size and scale codec, ever fewer element bits.
  const double fp8 = kl_with(round_trip<pq::MXFP8_E4M3>(w)).kl;
  const double fp6 = kl_with(round_trip<pq::MXFP6_E2M3>(w)).kl;
  const double fp4 = kl_with(round_trip<pq::MXFP4>(w)).kl;
  MESSAGE("KL MXFP8_E4M3 " << fp8 << ", MXFP6_E2M3 " << fp6 << ", MXFP4 " << fp4);
  CHECK(fp8 > 0);
  CHECK(fp8 < fp6);
  CHECK(fp6 < fp4);
}
