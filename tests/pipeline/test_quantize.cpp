// pq quantize end to end on a small synthetic model: the report keeps its promises, the checkpoint read
// back from disk evaluates to the KL the report states, and bad input is one clear error with nothing left.
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include <pq/io/export.hpp>
#include <pq/model/evaluation.hpp>
#include <pq/model/quantized_weights.hpp>
#include <pq/model/source_model.hpp>
#include <pq/pipeline/quantize.hpp>
#include <pq/pipeline/synth.hpp>

namespace fs = std::filesystem;
using namespace pq;

namespace {
struct fixture {
  fs::path root = fs::temp_directory_path() / ("pq_test_pipeline_" + std::to_string(::getpid()));
  fs::path model = root / "model";
  fixture() {
    fs::remove_all(root);
    fs::create_directories(root);
    pipeline::synth_options o;
    o.hidden_size = 128; o.intermediate_size = 256; o.num_layers = 2; o.num_heads = 2; o.num_kv_heads = 1;
    o.head_dim = 64; o.vocab_size = 512; o.seed = 3;
    pipeline::write_synthetic_checkpoint(o, model, {8, 4, 64});
  }
  ~fixture() { fs::remove_all(root); }
  pipeline::quantize_options options(const std::string& out) const {
    pipeline::quantize_options q;
    q.model = model;
    q.out = root / out;
    q.calib = (model / "tokens.safetensors").string() + ":calib";
    q.eval = (model / "tokens.safetensors").string() + ":eval";
    q.target_bits = 5.0;
    q.polish_trials = 2;
    q.jobs = 2;
    return q;
  }
};
std::FILE* quiet() {
  static std::FILE* f = std::fopen("/dev/null", "w");
  return f;
}
}  // namespace

TEST_CASE("the shipped checkpoint is what the report says") {
  fixture fx;
  const auto o = fx.options("q");
  const auto r = pipeline::run_quantize(o, quiet());
  CHECK(r["achieved_bpp"].get<double>() <= o.target_bits);
  CHECK(r["achieved_bpp"].get<double>() > 4.5);
  CHECK(fs::exists(o.out / "report.json"));
  CHECK(fs::exists(o.out / "pareto.svg"));
  // Every Linear has a format; the counts add up.
  long long n = 0;
  for (auto it = r["counts"].begin(); it != r["counts"].end(); ++it) n += it.value().get<long long>();
  CHECK(n == static_cast<long long>(r["assignment"].size()));
  // The round trip from disk: the export, read by pq's own reader, has the reported KL.
  const model::source_model src(fx.model);
  const model::runner run(src.weights(), src.shape());
  const auto eval = model::load_tokens(fx.model / "tokens.safetensors", "eval", src.shape().vocab);
  const model::reference_cache ref(run, eval);
  const auto checkpoint = io::ct_checkpoint::open(o.out);
  const model::quantized_weights back(checkpoint);
  const auto measured = ref.evaluate(back, 0);
  CHECK(measured.kl == doctest::Approx(r["shipped"]["kl"].get<double>()).epsilon(1e-9));
  CHECK(measured.kl > 0.0);
  CHECK(r["source"]["nll"].get<double>() == doctest::Approx(ref.reference().nll).epsilon(1e-9));
}

TEST_CASE("GPTQ + sweep beats RTN on the same budget") {
  fixture fx;
  auto g = fx.options("g");
  g.formats = {"NVFP4A16"};
  g.target_bits = 4.6;
  auto n = g;
  n.out = fx.root / "n";
  n.method = rounding::rtn;
  const auto rg = pipeline::run_quantize(g, quiet());
  const auto rn = pipeline::run_quantize(n, quiet());
  CHECK(rg["shipped"]["kl"].get<double>() < rn["shipped"]["kl"].get<double>());
}

TEST_CASE("bad input: one clear error, nothing left on disk, the source untouched") {
  fixture fx;
  const auto before = fs::last_write_time(fx.model / "model.safetensors");
  auto o = fx.options("bad");
  o.target_bits = 4.0;
  CHECK_THROWS_WITH_AS(pipeline::run_quantize(o, quiet()), doctest::Contains("smallest feasible budget is 4.50"),
                       pipeline::pipeline_error);
  o = fx.options("bad");
  o.formats = {"NVFP4", "FP5"};
  CHECK_THROWS_WITH_AS(pipeline::run_quantize(o, quiet()), doctest::Contains("unknown format 'FP5'"), unknown_format);
  o = fx.options("bad");
  o.eval = o.calib;
  CHECK_THROWS_WITH_AS(pipeline::run_quantize(o, quiet()), doctest::Contains("must be disjoint"), pipeline::pipeline_error);
  o = fx.options("bad");
  o.calib = (fx.model / "tokens.safetensors").string() + ":nope";
  CHECK_THROWS_WITH_AS(pipeline::run_quantize(o, quiet()), doctest::Contains("no tensor 'nope'"), model::model_error);
  o = fx.options("bad");
  o.out = fx.model;
  CHECK_THROWS_WITH_AS(pipeline::run_quantize(o, quiet()), doctest::Contains("is the source model"), io::export_error);
  o = fx.options("bad");
  o.calib->clear();
  o.self_calibration = false;  // weight-only: no activation maxima for W4A4
  o.formats = {"NVFP4", "BF16"};
  CHECK_THROWS_WITH_AS(pipeline::run_quantize(o, quiet()), doctest::Contains("use NVFP4A16"), pipeline::pipeline_error);
  for (const auto& e : fs::directory_iterator(fx.root)) CHECK(e.path().filename() == "model");  // nothing partial
  CHECK(fs::last_write_time(fx.model / "model.safetensors") == before);
}

TEST_CASE("an existing output is replaced only with force") {
  fixture fx;
  auto o = fx.options("twice");
  o.polish_trials = 0;
  pipeline::run_quantize(o, quiet());
  CHECK_THROWS_AS(pipeline::run_quantize(o, quiet()), io::export_error);
  o.force = true;
  const auto first = pipeline::run_quantize(o, quiet());
  // the second run found every rounding of the first one in the work folder and gives the same checkpoint
  const auto roundings = first["cost_table"]["linear_roundings"].get<long long>();
  CHECK(roundings > 0);
  CHECK(first["cost_table"]["reused"] == roundings);
  CHECK(first["cost_table"]["rounded_now"] == 0);
  o.resume = false;
  const auto fresh = pipeline::run_quantize(o, quiet());
  CHECK(fresh["cost_table"]["rounded_now"] == roundings);
  CHECK(fresh["shipped"]["kl"] == first["shipped"]["kl"]);
  CHECK(fresh["assignment"] == first["assignment"]);
}

TEST_CASE("an interrupted cost table resumes from the roundings already stored") {
  fixture fx;
  auto o = fx.options("resume");
  o.polish_trials = 0;
  const auto whole = pipeline::run_quantize(o, quiet());
  // as if the run had been killed part way: only whole files exist (written under a temporary name, then
  // renamed), so drop some of them, plus a stray temporary file, and run again
  const fs::path store = whole["work_dir"].get<std::string>();
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(store))
    if (e.path().extension() == ".safetensors") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  REQUIRE(files.size() >= 4);
  long long dropped = 0;
  for (std::size_t i = files.size() / 2; i < files.size(); ++i) {
    dropped += static_cast<long long>(io::safetensors_file::open(files[i]).metadata().size());
    fs::remove(files[i]);
  }
  std::ofstream(store / "0-NVFP4.safetensors.tmp") << "partial";
  fs::remove_all(o.out);
  const auto resumed = pipeline::run_quantize(o, quiet());
  CHECK(resumed["cost_table"]["rounded_now"].get<long long>() == dropped);  // one output error per Linear stored
  CHECK(resumed["cost_table"]["reused"].get<long long>() == whole["cost_table"]["linear_roundings"].get<long long>() - dropped);
  CHECK(resumed["assignment"] == whole["assignment"]);
  CHECK(resumed["shipped"]["kl"] == whole["shipped"]["kl"]);
  CHECK(resumed["predicted_loss"] == whole["predicted_loss"]);
}

// gptq+signround: SignRound starts exactly from GPTQ + sweep's stored rounding (so at zero iterations every unit's
// two candidates have the same block-output error and the build is GPTQ + sweep's), training never keeps a
// rounding with a higher block error than the one it replaces, report.json says what each unit shipped with, and
// a run with another output folder and budget on the same --work folder reuses every rounding, SignRound's too.
TEST_CASE("gptq+signround: starts from GPTQ exactly, keeps the lower block error, reuses a shared work folder") {
  fixture fx;
  auto base = fx.options("gptq");
  base.formats = {"INT4_G128", "BF16"};
  base.polish_trials = 0;
  const auto gptq = pipeline::run_quantize(base, quiet());

  auto zero = fx.options("sr0");
  zero.formats = base.formats;
  zero.polish_trials = 0;
  zero.method = rounding::gptq_signround;
  zero.signround_iters = 0;
  const auto r0 = pipeline::run_quantize(zero, quiet());
  const auto sr0 = nlohmann::json::parse(std::ifstream(fs::path(r0["work_dir"].get<std::string>()) / "signround.json"));
  REQUIRE(sr0.contains("INT4_G128"));
  CHECK_FALSE(sr0.contains("BF16"));  // a passthrough format has nothing to train
  for (const auto& [unit, c] : sr0["INT4_G128"].items()) {
    CAPTURE(unit);
    CHECK(c["block_error_signround"].get<double>() == c["block_error_stored"].get<double>());
    CHECK(c["rounding"] == "gptq_sweep");
  }
  CHECK(r0["assignment"] == gptq["assignment"]);
  CHECK(r0["shipped"]["kl"] == gptq["shipped"]["kl"]);

  auto trained = zero;
  trained.out = fx.root / "sr4";
  trained.work = fx.root / "shared-work";
  trained.signround_iters = 4;
  const auto r4 = pipeline::run_quantize(trained, quiet());
  const auto sr4 = nlohmann::json::parse(std::ifstream(fs::path(r4["work_dir"].get<std::string>()) / "signround.json"));
  CHECK(fs::path(r4["work_dir"].get<std::string>()).parent_path() == fx.root / "shared-work");
  for (const auto& [unit, c] : sr4["INT4_G128"].items()) {
    CAPTURE(unit);
    const double kept = c["rounding"] == "signround" ? c["block_error_signround"].get<double>() : c["block_error_stored"].get<double>();
    CHECK(kept <= std::min(c["block_error_signround"].get<double>(), c["block_error_stored"].get<double>()));
    CHECK(c["train_best_loss"].get<double>() <= c["train_first_loss"].get<double>());
  }
  int int4_units = 0;  // a unit names the rounding signround.json kept for it, or "none" where it shipped in BF16
  for (const auto& [unit, how] : r4["unit_rounding"].items()) {
    CAPTURE(unit);
    if (how == "none") continue;
    ++int4_units;
    CHECK(how == sr4["INT4_G128"][unit]["rounding"]);
  }
  CHECK(int4_units > 0);

  auto again = trained;
  again.out = fx.root / "sr4-6bits";
  again.target_bits = 6.0;
  const auto r6 = pipeline::run_quantize(again, quiet());
  CHECK(r6["cost_table"]["rounded_now"].get<long long>() == 0);
  CHECK(r6["work_dir"] == r4["work_dir"]);
}

// The hybrid decoder end to end (gated DeltaNet and gated attention, experts packed as released): the Fisher
// backward through the DeltaNet layers, the mixed build beating uniform NVFP4 round-to-nearest, the experts
// written per expert, and the checkpoint read back from disk evaluating to the reported KL.
TEST_CASE("tiny-qwen3_5moe-code: mixed NVFP4 / MXFP8_E4M3 / BF16 at 4.75 bits beats uniform NVFP4 RTN") {
  const fs::path model = fs::path(PQ_SOURCE_DIR) / "tests" / "models" / "tiny-qwen3_5moe-code";
  const fs::path root = fs::temp_directory_path() / ("pq_test_hybrid_" + std::to_string(::getpid()));
  fs::remove_all(root);
  pipeline::quantize_options m;
  m.model = model;
  m.out = root / "mixed";
  m.calib = (model / "tokens.safetensors").string() + ":calib";
  m.eval = (model / "tokens.safetensors").string() + ":eval";
  m.calib_windows = 16;
  m.eval_windows = 8;
  m.gradient_sequences = 8;
  m.formats = {"NVFP4", "MXFP8_E4M3", "BF16"};
  m.target_bits = 4.75;
  m.polish_trials = 2;
  m.jobs = 2;
  auto u = m;
  u.out = root / "rtn";
  u.formats = {"NVFP4"};
  u.target_bits = 16;
  u.method = rounding::rtn;
  const auto rm = pipeline::run_quantize(m, quiet());
  const auto ru = pipeline::run_quantize(u, quiet());
  MESSAGE("mixed KL " << rm["shipped"]["kl"].get<double>() << " at " << rm["achieved_bpp"].get<double>()
                      << " bits, uniform NVFP4 RTN " << ru["shipped"]["kl"].get<double>());
  CHECK(rm["achieved_bpp"].get<double>() <= 4.75);
  CHECK(rm["shipped"]["kl"].get<double>() < 0.8 * ru["shipped"]["kl"].get<double>());

  const auto checkpoint = io::ct_checkpoint::open(m.out);
  const auto names = checkpoint.dir.tensor_names();
  CHECK(std::none_of(names.begin(), names.end(), [](const std::string& n) {
    return !n.starts_with("mtp.") && (n.ends_with(".experts.gate_up_proj") || n.ends_with(".experts.down_proj"));
  }));
  const model::source_model src(model);
  const model::runner run(src.weights(), src.shape());
  const auto eval = model::load_tokens(model / "tokens.safetensors", "eval", src.shape().vocab).first(8);
  const model::reference_cache ref(run, eval);
  const model::quantized_weights back(checkpoint);
  CHECK(ref.evaluate(back, 0).kl == doctest::Approx(rm["shipped"]["kl"].get<double>()).epsilon(1e-9));
  fs::remove_all(root);
}
