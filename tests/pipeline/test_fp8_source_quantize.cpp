// pq quantize from a block-FP8 source (a synthetic model's FP8 copy, partial edge tiles included): FP8_SOURCE is
// priced at zero error and its stored bits, BF16 of the FP8 weights is rounded and priced like any format, what
// the report measured is what the checkpoint decodes to; FP8_SOURCE on a dense source is one clear error.
#include <doctest/doctest.h>

#include <filesystem>
#include <string>
#include <vector>

#include <pq/io/export.hpp>
#include <pq/io/fp8_block.hpp>
#include <pq/model/evaluation.hpp>
#include <pq/model/quantized_weights.hpp>
#include <pq/model/source_model.hpp>
#include <pq/pipeline/format_table.hpp>
#include <pq/pipeline/quantize.hpp>
#include <pq/pipeline/synth.hpp>

#include "../io/fp8/fp8_copy.hpp"

namespace fs = std::filesystem;
using namespace pq;

namespace {
// A synthetic Llama (down_proj [128, 320] and k/v [64, 128]: partial tiles both ways) and its block-FP8 copy.
struct fp8q_fixture {
  fs::path root = fs::temp_directory_path() / ("pq_test_fp8q_" + std::to_string(::getpid()));
  fs::path dense = root / "dense", fp8 = root / "fp8";
  fp8q_fixture() {
    fs::remove_all(root);
    fs::create_directories(root);
    pipeline::synth_options o;
    o.hidden_size = 128; o.intermediate_size = 320; o.num_layers = 2; o.num_heads = 2; o.num_kv_heads = 1;
    o.head_dim = 64; o.vocab_size = 512; o.seed = 5;
    pipeline::write_synthetic_checkpoint(o, dense, {8, 4, 64});
    fp8_testing::write_fp8_block_copy(dense, fp8);
  }
  ~fp8q_fixture() { fs::remove_all(root); }
  pipeline::quantize_options options(const fs::path& model, const std::string& out, std::vector<std::string> formats,
                                     double bits) const {
    pipeline::quantize_options q;
    q.model = model;
    q.out = root / out;
    q.calib = (model / "tokens.safetensors").string() + ":calib";
    q.eval = (model / "tokens.safetensors").string() + ":eval";
    q.formats = std::move(formats);
    q.target_bits = bits;
    q.polish_trials = 2;
    q.jobs = 2;
    return q;
  }
};
std::FILE* fp8q_quiet() {
  static std::FILE* f = std::fopen("/dev/null", "w");
  return f;
}

// KL of the checkpoint at `out` read back from disk by pq's reader, against the source's forward.
double fp8q_measured_kl(const fs::path& model, const fs::path& out) {
  const model::source_model src(model);
  const model::runner run(src.weights(), src.shape());
  const auto eval = model::load_tokens(model / "tokens.safetensors", "eval", src.shape().vocab);
  const model::reference_cache ref(run, eval);
  const auto ct = io::ct_checkpoint::open(out);
  const model::quantized_weights back(ct);
  return ref.evaluate(back, 0).kl;
}
}  // namespace

TEST_CASE("the format table: FP8_SOURCE where the source is block FP8 at zero error, nowhere else") {
  const fp8q_fixture fx;
  const model::source_model src(fx.fp8);
  const auto prof = model::make_profile(src.config());
  const auto layout = io::fp8_block_layout_of(src.dir().config_json(), "config.json");
  std::vector<source_encoding> fp8, dense(prof.linears.size());
  for (const auto& l : prof.linears) fp8.push_back(io::linear_encoding(src.dir(), layout, l.name));
  for (const auto& e : fp8) CHECK(e == fp8_block_layout{128, 128});

  const pipeline::format_table t({"FP8_SOURCE", "NVFP4", "BF16"}, rounding::gptq_sweep, fp8);
  CHECK_FALSE(t[0].method.has_value());  // nothing to round
  CHECK(t[2].method == rounding::rtn);    // BF16 of an FP8 weight: to nearest
  for (const auto& u : prof.units) {
    CAPTURE(u.name);
    std::int64_t want = 0;
    for (int m : u.members) {
      const auto& l = prof.linears[static_cast<std::size_t>(m)];
      want += 8 * l.rows * l.cols + 32 * ((l.rows + 127) / 128) * ((l.cols + 127) / 128);  // codes + F32 tile scales
      CHECK(t.keeps(static_cast<std::size_t>(m), 0));
      CHECK_FALSE(t.keeps(static_cast<std::size_t>(m), 2));
    }
    CHECK(t.unit_bits(prof, u, 0) == want);
    CHECK_FALSE(t.rounds(prof, u, 0));
    CHECK(t.rounds(prof, u, 1));
    CHECK(t.rounds(prof, u, 2));
  }
  // The same menu for a dense source: a clear error naming FP8_SOURCE, before anything is computed.
  CHECK_THROWS_WITH_AS(pipeline::format_table({"NVFP4", "FP8_SOURCE"}, rounding::gptq_sweep, dense),
                       doctest::Contains("--formats FP8_SOURCE: FP8_SOURCE ships a Linear the source stores as block FP8 "
                                         "in 128x128 tiles as it is, and this source stores no Linear so"),
                       pipeline::pipeline_error);
  const pipeline::format_table d({"NVFP4", "BF16"}, rounding::gptq_sweep, dense);
  for (const auto& u : prof.units) CHECK_FALSE(d.rounds(prof, u, 1));  // BF16 of a dense weight is the source's
}

TEST_CASE("pq quantize from a block-FP8 source ships what it measured, FP8_SOURCE Linears as they came") {
  const fp8q_fixture fx;
  const auto o = fx.options(fx.fp8, "q", {"FP8_SOURCE", "NVFP4", "BF16"}, 6.0);
  const auto r = pipeline::run_quantize(o, fp8q_quiet());
  MESSAGE("FP8_SOURCE,NVFP4,BF16 at 6 bits: counts " << r["counts"].dump() << ", KL " << r["shipped"]["kl"].get<double>());
  CHECK(r["achieved_bpp"].get<double>() <= 6.0);
  CHECK(r["counts"].value("FP8_SOURCE", 0) > 0);
  CHECK(r["counts"].value("NVFP4", 0) > 0);
  // Only NVFP4 and BF16 were rounded (FP8_SOURCE keeps), every unit once each.
  const auto src = io::model_dir::open(fx.fp8);
  const auto prof = model::make_profile(model::parse_config(src.config_json(), "config.json"));
  CHECK(r["cost_table"]["linear_roundings"] == 2 * static_cast<long long>(prof.linears.size()));
  CHECK(fp8q_measured_kl(fx.fp8, o.out) == doctest::Approx(r["shipped"]["kl"].get<double>()).epsilon(1e-9));
  const auto out = io::model_dir::open(o.out);
  for (const auto& l : prof.linears) {
    CAPTURE(l.name);
    CHECK_FALSE(out.has(l.name + ".weight_scale_inv"));
    if (r["assignment"][l.name] != "FP8_SOURCE") continue;
    CHECK(std::ranges::equal(out.tensor(l.name + ".weight").data, src.tensor(l.name + ".weight").data));
    CHECK(std::ranges::equal(out.tensor(l.name + ".weight_scale").data, src.tensor(l.name + ".weight_scale_inv").data));
  }

  // BF16 of the FP8 weights: rounded, priced above zero, measured as it ships.
  const auto b = fx.options(fx.fp8, "b", {"NVFP4", "BF16"}, 7.0);
  const auto rb = pipeline::run_quantize(b, fp8q_quiet());
  MESSAGE("NVFP4,BF16 at 7 bits from the FP8 copy: counts " << rb["counts"].dump() << ", KL " << rb["shipped"]["kl"].get<double>());
  REQUIRE(rb["counts"].value("BF16", 0) > 0);
  CHECK(fp8q_measured_kl(fx.fp8, b.out) == doctest::Approx(rb["shipped"]["kl"].get<double>()).epsilon(1e-9));
  for (const auto& p : rb["pareto"]) CHECK(p["predicted"].get<double>() > 0.0);  // no assignment is free here
}

TEST_CASE("--formats FP8_SOURCE on a dense source is refused before any compute, nothing written") {
  const fp8q_fixture fx;
  const auto o = fx.options(fx.dense, "x", {"FP8_SOURCE", "NVFP4", "BF16"}, 6.0);
  CHECK_THROWS_WITH_AS(pipeline::run_quantize(o, fp8q_quiet()), doctest::Contains("--formats FP8_SOURCE: FP8_SOURCE ships"),
                       pipeline::pipeline_error);
  CHECK_FALSE(fs::exists(o.out));
  CHECK_FALSE(fs::exists(fs::path(o.out->string() + ".pq-work")));
}
