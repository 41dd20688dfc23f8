// `pq quantize --calib-text/--eval-text`: text through the model's own tokenizer.json, calibration and
// evaluation windows that never share text, and bad input as one clear error before any compute.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <unistd.h>

#include <pq/pipeline/quantize.hpp>
#include <pq/pipeline/synth.hpp>
#include <pq/pipeline/text_calibration.hpp>
#include <pq/text/tokenizer.hpp>

namespace fs = std::filesystem;
using namespace pq;

namespace {
std::FILE* text_quiet() {
  static std::FILE* f = std::fopen("/dev/null", "w");
  return f;
}

// A 320-token byte-level BPE tokenizer (Llama-3 split regex) trained on Python files.
const fs::path tokenizer_json = fs::path(PQ_SOURCE_DIR) / "tests/text/data/llama3_style_tokenizer.json";

struct text_fixture {
  fs::path root = fs::temp_directory_path() / ("pq_test_text_calib_" + std::to_string(::getpid()));
  fs::path model = root / "model";
  explicit text_fixture(int vocab = 512) {
    fs::remove_all(root);
    fs::create_directories(root);
    pipeline::synth_options o;
    o.hidden_size = 128; o.intermediate_size = 256; o.num_layers = 2; o.num_heads = 2; o.num_kv_heads = 1;
    o.head_dim = 64; o.vocab_size = vocab; o.seed = 5;
    pipeline::write_synthetic_checkpoint(o, model, {4, 4, 32});
    fs::copy_file(tokenizer_json, model / "tokenizer.json");
  }
  ~text_fixture() { fs::remove_all(root); }
  fs::path write(const std::string& name, const std::string& content) const {
    std::ofstream(root / name, std::ios::binary) << content;
    return root / name;
  }
  pipeline::quantize_options options(const std::string& out) const {
    pipeline::quantize_options q;
    q.model = model;
    q.out = root / out;
    q.formats = {"NVFP4", "MXFP8_E4M3", "BF16"};
    q.target_bits = 5.0;
    q.polish_trials = 1;
    q.jobs = 2;
    q.seq_len = 32;
    q.calib_samples = 6;
    q.eval_samples = 4;
    return q;
  }
  // Only the model and the text files are in root: nothing partial was written.
  void check_nothing_written() const {
    for (const auto& e : fs::directory_iterator(root)) CHECK((e.path().filename() == "model" || e.path().extension() == ".txt"));
  }
};

// Paragraphs of Python whose every line is unique (it names its paragraph and line), so a decoded
// window occurs at exactly one place of the file.
std::string python_text(int paragraphs, int first = 0) {
  std::string s;
  for (int k = first; k < first + paragraphs; ++k) {
    s += "def f" + std::to_string(k) + "(x):\n";
    for (int j = 0; j < 4; ++j) s += "    v" + std::to_string(k) + "_" + std::to_string(j) + " = x * " + std::to_string(k * 7 + j) + "\n";
    s += "    return v" + std::to_string(k) + "_0\n\n";
  }
  return s;
}

std::string error_of(auto&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "no error";
}
}  // namespace

TEST_CASE("one text file: calibration and evaluation windows never share text") {
  text_fixture fx;
  const std::string text = python_text(60);
  const fs::path file = fx.write("code.txt", text);
  pipeline::text_request r;
  r.calib_text = file;
  r.seq_len = 24;
  r.calib_windows = 10;
  r.eval_windows = 4;
  const auto config = nlohmann::json::parse(std::ifstream(fx.model / "config.json"));
  const auto t = pipeline::load_text_tokens(fx.model, config, 512, r);
  REQUIRE(t.calib);
  REQUIRE(t.eval);
  CHECK(t.calib->sequences == 10);
  CHECK(t.eval->sequences == 4);
  CHECK(t.calib->length == 24);
  const auto tok = text::load_model_tokenizer(fx.model);
  // Where each window's text lies in the file: calibration windows all before every evaluation window.
  auto span_of = [&](const model::token_batch& b, Eigen::Index i) {
    const std::string s = tok.decode(std::span(b.ids).subspan(static_cast<std::size_t>(i * b.length), static_cast<std::size_t>(b.length)));
    const auto at = text.find(s);
    REQUIRE(at != std::string::npos);
    CHECK(text.find(s, at + 1) == std::string::npos);  // unique
    return std::pair{at, at + s.size()};
  };
  std::size_t calib_end = 0, eval_begin = text.size();
  for (Eigen::Index i = 0; i < t.calib->sequences; ++i) calib_end = std::max(calib_end, span_of(*t.calib, i).second);
  for (Eigen::Index i = 0; i < t.eval->sequences; ++i) eval_begin = std::min(eval_begin, span_of(*t.eval, i).first);
  CHECK(calib_end <= eval_begin);
  // ... and not merely by accident of the windows' placement: the held-out part is whole paragraphs
  // that the calibration stream does not contain at all.
  const std::size_t paragraph_start = text.rfind("def f", eval_begin);
  CHECK(calib_end <= paragraph_start);
  CHECK(t.calib_description.find("documents 0..") != std::string::npos);
  CHECK(t.calib_description.find("held out for evaluation") != std::string::npos);
  CHECK(t.eval_description.find("held out") != std::string::npos);
  CHECK(t.eval_description.find("of 60") != std::string::npos);
}

TEST_CASE("pq quantize on text: calibration windows and held-out evaluation are reported") {
  text_fixture fx;
  auto o = fx.options("q");
  o.calib_text = fx.write("code.txt", python_text(80));
  const auto r = pipeline::run_quantize(o, text_quiet());
  const std::string calib = r["tokens"]["calibration"].get<std::string>();
  const std::string eval = r["tokens"]["evaluation"].get<std::string>();
  CHECK(calib.rfind("6 windows x 32 tokens from text " + o.calib_text->string(), 0) == 0);
  CHECK(eval.rfind("4 windows x 32 tokens from text " + o.calib_text->string(), 0) == 0);
  CHECK(eval.find("held out") != std::string::npos);
  CHECK(r["shipped"]["kl"].get<double>() > 0.0);
  CHECK(fs::exists(o.out / "report.json"));

  // evaluation text alone: calibration is self-generated, with the windows' length
  auto e = fx.options("e");
  e.eval_text = fx.write("eval.txt", python_text(30));
  const auto re = pipeline::run_quantize(e, text_quiet());
  CHECK(re["tokens"]["calibration"].get<std::string>().rfind("self-generated: 6 x 32", 0) == 0);
  CHECK(re["tokens"]["evaluation"].get<std::string>().rfind("4 windows x 32 tokens from text", 0) == 0);
}

TEST_CASE("bad text input: one clear error before any compute, nothing left on disk") {
  text_fixture fx;
  const auto good = fx.write("good.txt", python_text(80));
  auto o = fx.options("bad");

  o.calib_text = fx.write("empty.txt", "");
  CHECK(error_of([&] { pipeline::run_quantize(o, text_quiet()); }).find("empty.txt: contains no text") != std::string::npos);

  o.calib_text = fx.write("short.txt", "import os\n\nprint(os.getcwd())\n");
  const std::string short_error = error_of([&] { pipeline::run_quantize(o, text_quiet()); });
  CHECK(short_error.find("short.txt") != std::string::npos);
  CHECK(short_error.find("too little text") != std::string::npos);
  o.eval_text = good;  // with its own eval file, the short calib file is too short for the windows
  const std::string short_windows = error_of([&] { pipeline::run_quantize(o, text_quiet()); });
  CHECK(short_windows.find("short.txt (calibration): needs 6 windows of 32 tokens") != std::string::npos);
  o.eval_text->clear();

  std::string bad_utf8 = python_text(40);
  bad_utf8.insert(100, "\xC3\x28");  // a lead byte without its continuation
  o.calib_text = fx.write("latin1.txt", bad_utf8);
  CHECK_THROWS_WITH_AS(pipeline::run_quantize(o, text_quiet()), doctest::Contains("latin1.txt: invalid UTF-8 at byte offset 100"),
                       text::text_error);

  o.calib_text = good;
  o.calib = (fx.model / "tokens.safetensors").string() + ":calib";
  CHECK_THROWS_WITH_AS(pipeline::run_quantize(o, text_quiet()), doctest::Contains("--calib and --calib-text exclude each other"),
                       pipeline::pipeline_error);
  o.calib->clear();

  o.eval_text = good;  // the same text on both sides: nothing is left to evaluate on
  CHECK_THROWS_WITH_AS(pipeline::run_quantize(o, text_quiet()), doctest::Contains("every document also occurs in"),
                       text::text_error);
  fx.check_nothing_written();
}

TEST_CASE("text calibration with token evaluation, and evaluation text that shares documents with the calibration") {
  text_fixture fx;
  auto o = fx.options("tokens");
  o.calib_text = fx.write("code.txt", python_text(80));
  o.eval = (fx.model / "tokens.safetensors").string();  // FILE alone: the tensor named eval
  const auto r = pipeline::run_quantize(o, text_quiet());
  CHECK(r["tokens"]["calibration"].get<std::string>().rfind("6 windows x 32 tokens from text " + o.calib_text->string(), 0) == 0);
  const std::string eval = r["tokens"]["evaluation"].get<std::string>();
  CHECK(eval.find("tokens.safetensors") != std::string::npos);
  CHECK(eval.find("from text") == std::string::npos);
  CHECK(r["shipped"]["kl"].get<double>() > 0.0);

  // Evaluation paragraphs 70..109 against calibration paragraphs 0..79: the ten shared ones are dropped and
  // counted, the rest evaluated.
  auto s = fx.options("shared");
  s.calib_text = o.calib_text;
  s.eval_text = fx.write("eval.txt", python_text(40, 70));
  const auto rs = pipeline::run_quantize(s, text_quiet());
  CHECK(rs["tokens"]["evaluation_documents_dropped"].get<int>() == 10);
  CHECK(rs["tokens"]["evaluation"].get<std::string>().find("; 10 documents that also occur in the calibration text were dropped") != std::string::npos);
}

TEST_CASE("a tokenizer.json that does not match the model's vocabulary is refused") {
  text_fixture fx(256);  // the tokenizer has 320 ids
  auto o = fx.options("bad");
  o.calib_text = fx.write("code.txt", python_text(80));
  CHECK_THROWS_WITH_AS(pipeline::run_quantize(o, text_quiet()), doctest::Contains("vocab_size 256 is smaller than the tokenizer's 320"),
                       text::text_error);
  fx.check_nothing_written();
}
