// Data-free calibration: the incremental decoder agrees with the full forward, sampling is reproducible,
// and `pq quantize` without calibration data calibrates on sequences sampled from the model itself.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>
#include <set>

#include <pq/io/export.hpp>
#include <pq/model/decoder.hpp>
#include <pq/model/evaluation.hpp>
#include <pq/model/quantized_weights.hpp>
#include <pq/model/source_model.hpp>
#include <pq/pipeline/quantize.hpp>
#include <pq/pipeline/self_calibration.hpp>
#include <pq/pipeline/synth.hpp>

namespace fs = std::filesystem;
using namespace pq;

namespace {
std::FILE* selfcal_quiet() {
  static std::FILE* f = std::fopen("/dev/null", "w");
  return f;
}

pipeline::synth_options small(pipeline::synth_arch arch) {
  pipeline::synth_options o;
  o.arch = arch;
  o.hidden_size = 128; o.intermediate_size = 256; o.num_layers = 2; o.num_heads = 4; o.num_kv_heads = 2;
  o.head_dim = 32; o.vocab_size = 512; o.seed = 11;
  o.num_experts = 4; o.moe_intermediate_size = 64; o.shared_expert_intermediate_size = 128;
  return o;
}

struct model_dir {
  fs::path root;
  fs::path model;
  explicit model_dir(const std::string& name, pipeline::synth_arch arch = pipeline::synth_arch::llama)
      : root(fs::temp_directory_path() / ("pq_test_selfcal_" + name + "_" + std::to_string(::getpid()))), model(root / "model") {
    fs::remove_all(root);
    fs::create_directories(root);
    pipeline::write_synthetic_checkpoint(small(arch), model, {8, 4, 32});
  }
  ~model_dir() { fs::remove_all(root); }
};

// max |a - b| / max |b|
double relative_error(const model::matrix& a, const model::matrix& b) {
  return static_cast<double>((a - b).cwiseAbs().maxCoeff()) / static_cast<double>(b.cwiseAbs().maxCoeff());
}
}  // namespace

TEST_CASE("the incremental decoder's logits equal the full forward's on the same prefix") {
  for (const auto arch : {pipeline::synth_arch::llama, pipeline::synth_arch::qwen2_moe}) {
    CAPTURE(static_cast<int>(arch));
    model_dir d(arch == pipeline::synth_arch::llama ? "dec_llama" : "dec_moe", arch);
    const model::source_model src(d.model);
    const model::runner run(src.weights(), src.shape(), {.threads = 2});
    const Eigen::Index batch = 3, len = 24;
    std::mt19937 rng(5);
    model::token_batch t{batch, len, std::vector<std::int32_t>(batch * len)};
    for (auto& id : t.ids) id = static_cast<std::int32_t>(rng() % 512);
    const model::matrix full = run.logits(t);  // [batch * len, vocab]

    for (const std::size_t resident : {std::size_t{2} << 30, std::size_t{0}}) {  // all layers loaded; all streamed
      model::decoder dec(run, batch, len, {.resident_bytes = resident});
      CHECK(dec.resident_layers() == (resident ? 2 : 0));
      double worst = 0;
      for (Eigen::Index p = 0; p < len; ++p) {
        std::vector<std::int32_t> ids;
        for (Eigen::Index b = 0; b < batch; ++b) ids.push_back(t.at(b, p));
        const model::matrix step = dec.step(ids);
        REQUIRE(step.rows() == batch);
        for (Eigen::Index b = 0; b < batch; ++b) {
          const model::matrix want = full.row(b * len + p);
          worst = std::max(worst, relative_error(step.row(b), want));
        }
      }
      CHECK(worst < 1e-5);
      MESSAGE("max relative logit difference, decoder vs forward: " << worst);
      CHECK_THROWS_WITH_AS(dec.step(std::vector<std::int32_t>(batch, 0)), doctest::Contains("positions are used"),
                           model::model_error);
    }
  }
}

TEST_CASE("the decoder on a real checkpoint agrees with the reference forward") {
  const fs::path dir = fs::path(PQ_MODELS_DIR) / "tiny-llama-code";
  if (!fs::exists(dir / "tokens.safetensors")) return;  // the shared test models are not on this machine
  const model::source_model src(dir);
  const model::runner run(src.weights(), src.shape(), {.threads = 2});
  const auto eval = model::load_tokens(dir / "tokens.safetensors", "eval", src.shape().vocab);
  const Eigen::Index len = 32;
  model::token_batch t{2, len, {}};
  for (Eigen::Index b = 0; b < 2; ++b)
    for (Eigen::Index p = 0; p < len; ++p) t.ids.push_back(eval.at(b, p));
  const model::matrix full = run.logits(t);
  model::decoder dec(run, 2, len);
  double worst = 0;
  for (Eigen::Index p = 0; p < len; ++p) {
    const model::matrix step = dec.step(std::vector<std::int32_t>{t.at(0, p), t.at(1, p)});
    for (Eigen::Index b = 0; b < 2; ++b) worst = std::max(worst, relative_error(step.row(b), full.row(b * len + p)));
  }
  MESSAGE("tiny-llama-code: max relative logit difference, decoder vs forward: " << worst);
  CHECK(worst < 1e-5);
}

TEST_CASE("self-generated sequences: start with BOS, stay in the vocabulary, reproducible for a seed") {
  model_dir d("sample");
  const model::source_model src(d.model);
  const model::runner run(src.weights(), src.shape(), {.threads = 2});
  const auto bos = pipeline::start_token(src.dir().config_json());
  REQUIRE(bos.has_value());
  pipeline::self_calibration_options o;
  o.sequences = 4;
  o.length = 20;
  o.seed = 7;
  o.start_token = *bos;
  const auto a = pipeline::generate_calibration(run, o);
  const auto b = pipeline::generate_calibration(run, o);
  REQUIRE(a.sequences == 4);
  REQUIRE(a.length == 20);
  CHECK(a.ids == b.ids);  // same seed, same tokens
  std::set<std::int32_t> distinct;
  for (Eigen::Index s = 0; s < a.sequences; ++s) {
    CHECK(a.at(s, 0) == *bos);
    for (Eigen::Index p = 0; p < a.length; ++p) {
      CHECK(a.at(s, p) >= 0);
      CHECK(a.at(s, p) < src.shape().vocab);
      distinct.insert(a.at(s, p));
    }
  }
  CHECK(distinct.size() > 20);  // sampled at temperature 1, not a constant or greedy loop
  // the sequences of one batch differ from each other (each has its own generator)
  CHECK(std::vector<std::int32_t>(a.ids.begin(), a.ids.begin() + 20) != std::vector<std::int32_t>(a.ids.begin() + 20, a.ids.begin() + 40));
  o.seed = 8;
  const auto c = pipeline::generate_calibration(run, o);
  CHECK(c.ids != a.ids);
  for (Eigen::Index s = 0; s < c.sequences; ++s) CHECK(c.at(s, 0) == *bos);
}

TEST_CASE("start token: bos_token_id, else eos_token_id (integer or list), else none") {
  CHECK(pipeline::start_token(nlohmann::json{{"bos_token_id", 5}, {"eos_token_id", 6}}) == 5);
  CHECK(pipeline::start_token(nlohmann::json{{"bos_token_id", nullptr}, {"eos_token_id", 6}}) == 6);
  CHECK(pipeline::start_token(nlohmann::json{{"eos_token_id", {9, 10}}}) == 9);
  CHECK_FALSE(pipeline::start_token(nlohmann::json{{"vocab_size", 10}}).has_value());
}

TEST_CASE("pq quantize without calibration data calibrates on self-generated sequences") {
  model_dir d("quantize");
  pipeline::quantize_options o;
  o.model = d.model;
  o.out = d.root / "q";
  o.eval = (d.model / "tokens.safetensors").string() + ":eval";
  o.formats = {"NVFP4", "MXFP8_E4M3", "BF16"};  // NVFP4 is W4A4: it needs activation maxima
  o.target_bits = 5.0;
  o.polish_trials = 1;
  o.jobs = 2;
  o.calib_samples = 6;
  o.seq_len = 24;
  o.seed = 3;
  const auto r = pipeline::run_quantize(o, selfcal_quiet());
  const std::string calib = r["tokens"]["calibration"].get<std::string>();
  CHECK(calib.rfind("self-generated: 6 x 24, seed 3, temperature 1", 0) == 0);
  CHECK(r["timings_s"].contains("self_calibration"));
  CHECK(r["counts"].contains("NVFP4"));
  // a valid checkpoint: pq's reader opens it and it evaluates to the reported KL
  const model::source_model src(d.model);
  const model::runner run(src.weights(), src.shape());
  const auto eval = model::load_tokens(d.model / "tokens.safetensors", "eval", src.shape().vocab);
  const model::reference_cache ref(run, eval);
  const auto checkpoint = io::ct_checkpoint::open(o.out);
  const model::quantized_weights back(checkpoint);
  CHECK(ref.evaluate(back, 0).kl == doctest::Approx(r["shipped"]["kl"].get<double>()).epsilon(1e-9));
  std::ifstream in(o.out / "report.json");
  const auto on_disk = nlohmann::json::parse(in);
  CHECK(on_disk["tokens"]["calibration"] == calib);
  // W4A4 NVFP4 Linears carry an activation scale, from the self-generated activations
  bool input_scale = false;
  for (const auto& f : fs::directory_iterator(o.out))
    if (f.path().extension() == ".safetensors") {
      const auto st = io::safetensors_file::open(f.path());
      for (const auto& t : st.tensors()) input_scale |= t.name.find("input_global_scale") != std::string::npos;
    }
  CHECK(input_scale);

  // --no-self-calibration: the old weight-only path, and W4A4 NVFP4 is refused
  o.out = d.root / "none";
  o.self_calibration = false;
  CHECK_THROWS_WITH_AS(pipeline::run_quantize(o, selfcal_quiet()), doctest::Contains("use NVFP4A16"), pipeline::pipeline_error);
  o.formats = {"NVFP4A16", "MXFP8_E4M3", "BF16"};
  const auto w = pipeline::run_quantize(o, selfcal_quiet());
  CHECK(w["tokens"]["calibration"].is_null());
  CHECK_FALSE(w["timings_s"].contains("self_calibration"));
}

TEST_CASE("self-calibration without a start token is one clear error before any compute") {
  model_dir d("nobos");
  auto config = nlohmann::json::parse(std::ifstream(d.model / "config.json"));
  config.erase("bos_token_id");
  config.erase("eos_token_id");
  std::ofstream(d.model / "config.json") << config.dump(2);
  pipeline::quantize_options o;
  o.model = d.model;
  o.out = d.root / "q";
  o.formats = {"NVFP4A16", "BF16"};
  o.target_bits = 5.0;
  CHECK_THROWS_WITH_AS(pipeline::run_quantize(o, selfcal_quiet()), doctest::Contains("neither bos_token_id nor eos_token_id"),
                       pipeline::pipeline_error);
  for (const auto& e : fs::directory_iterator(d.root)) CHECK(e.path().filename() == "model");  // nothing written
}
