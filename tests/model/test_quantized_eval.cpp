// An exported compressed-tensors checkpoint read back through pq's reader evaluates exactly like the
// same dequantized weights substituted in memory.
#include <pq/model/quantized_weights.hpp>  // first: it includes io/export.hpp (see the note there)

#include <pq/formats/bundle.hpp>
#include <pq/model/evaluation.hpp>
#include <pq/model/source_model.hpp>
#include <pq/quant/rtn.hpp>

#include <doctest/doctest.h>

#include <filesystem>

using namespace pq::model;

TEST_CASE("tiny-qwen2moe-code exported with INT4_G128 and INT8_CHANNEL Linears: KL read back from disk equals KL in memory") {
  const auto dir = std::filesystem::path(PQ_MODELS_DIR) / "tiny-qwen2moe-code";
  if (!std::filesystem::exists(dir / "config.json")) {
    MESSAGE("skipped: " << dir.string() << " is absent");
    return;
  }
  const source_model source(dir);
  const profile prof = make_profile(source.config());
  // Layer 1 (MoE: every expert, the shared expert, attention) in INT4_G128, layer 4 in INT8_CHANNEL.
  std::vector<std::string> formats(prof.linears.size(), "BF16");
  substituted_weights expected(source.weights());
  const auto out = std::filesystem::temp_directory_path() / "pq_model_test_export";
  std::filesystem::remove_all(out);
  {
    pq::io::ct_export exporter(source.dir(), prof,
                               [&] {
                                 std::vector<std::string> f = formats;
                                 for (std::size_t i = 0; i < prof.linears.size(); ++i)
                                   if (prof.linears[i].layer == 1) f[i] = "INT4_G128";
                                   else if (prof.linears[i].layer == 4) f[i] = "INT8_CHANNEL";
                                 formats = f;
                                 return f;
                               }(),
                               out);
    for (std::size_t i = 0; i < prof.linears.size(); ++i) {
      if (formats[i] == "BF16") continue;
      const auto& l = prof.linears[i];
      const matrix w = load_matrix(source.weights(), l.name + ".weight", l.rows, l.cols);
      const std::span<const float> span(w.data(), static_cast<std::size_t>(w.size()));
      pq::visit_format(formats[i], [&](auto f) {
        using F = decltype(f);
        const auto q = pq::quantize_rtn<F>(span, l.rows, l.cols);
        const auto packed = pq::pack(q);
        exporter.write_linear(i, packed);
        const std::vector<float> deq = pq::dequantize(q);
        expected.substitute(l.name, Eigen::Map<const matrix>(deq.data(), l.rows, l.cols));
      });
    }
    exporter.finish();
  }

  const pq::io::ct_checkpoint ct = pq::io::ct_checkpoint::open(out);
  const quantized_weights quantized(ct);
  check_checkpoint(quantized, source.shape(), out.string());
  const runner r(source.weights(), source.shape());
  const reference_cache cache(r, load_tokens(dir / "tokens.safetensors", "eval", source.shape().vocab).first(2));
  const eval_result from_disk = cache.evaluate(quantized, 0);
  const eval_result in_memory = cache.evaluate(expected, 0);
  const eval_result replayed = cache.evaluate(expected);  // from layer 1, the first changed
  MESSAGE("KL " << from_disk.kl << ", NLL " << from_disk.nll << " (source " << cache.reference().nll << ")");
  CHECK(from_disk.kl > 0);
  CHECK(from_disk.kl == in_memory.kl);
  CHECK(from_disk.nll == in_memory.nll);
  CHECK(replayed.kl == doctest::Approx(in_memory.kl).epsilon(1e-9));
  std::filesystem::remove_all(out);
}
