// Calibration / evaluation windows from text files: documents, disjoint split, errors.
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <unistd.h>

#include <pq/text/text_windows.hpp>
#include <pq/text/utf8.hpp>

namespace fs = std::filesystem;
using namespace pq::text;
using ids = std::vector<std::int32_t>;

namespace {

const fs::path fixture = fs::path(PQ_SOURCE_DIR) / "tests/text/data/llama3_style_tokenizer.json";
constexpr std::int32_t end_of_text = 1;  // <|end_of_text|> in the fixture

struct temp_dir {
  fs::path path = fs::temp_directory_path() / ("pq_text_windows_" + std::to_string(::getpid()));
  temp_dir() { fs::create_directories(path); }
  ~temp_dir() { fs::remove_all(path); }
  fs::path write(const std::string& name, const std::string& content) const {
    std::ofstream(path / name, std::ios::binary) << content;
    return path / name;
  }
};

std::string error_of(auto&& f) {
  try {
    f();
  } catch (const text_error& e) {
    return e.what();
  }
  return "no error";
}

// Document k: 30 copies of the CJK ideograph U+4E00+k, so its tokens differ from every other's.
std::string cjk_document(int k) {
  std::string one;
  append_utf8(one, static_cast<char32_t>(0x4E00 + k));
  std::string doc;
  for (int i = 0; i < 30; ++i) doc += one + " ";
  return doc;
}

std::string json_lines(const std::vector<std::string>& docs) {
  std::string out;
  for (const auto& d : docs) out += nlohmann::json{{"text", d}}.dump() + "\n";
  return out;
}

// Token -> the one document whose encoding contains it (tokens shared by documents are left out).
std::map<std::int32_t, int> signatures(const tokenizer& tok, const std::vector<std::string>& docs) {
  std::map<std::int32_t, std::set<int>> owners;
  for (int k = 0; k < static_cast<int>(docs.size()); ++k)
    for (auto id : tok.encode(docs[static_cast<std::size_t>(k)])) owners[id].insert(k);
  std::map<std::int32_t, int> unique;
  for (const auto& [id, who] : owners)
    if (who.size() == 1) unique[id] = *who.begin();
  return unique;
}

std::set<int> documents_seen(const token_windows& w, const std::map<std::int32_t, int>& signature) {
  std::set<int> seen;
  for (auto id : w.ids)
    if (auto it = signature.find(id); it != signature.end()) seen.insert(it->second);
  return seen;
}

bool is_slice_of(std::span<const std::int32_t> window, const ids& stream) {
  return std::search(stream.begin(), stream.end(), window.begin(), window.end()) != stream.end();
}

}  // namespace

TEST_CASE("plain text documents are paragraphs that join back into the file") {
  temp_dir dir;
  const std::string text = "para one\nline 2\n\n\npara two\n  \npara three";
  const auto docs = read_documents(dir.write("a.txt", text));
  REQUIRE(docs.size() == 3);
  CHECK(docs[0] == "para one\nline 2\n\n\n");
  CHECK(docs[1] == "para two\n  \n");
  CHECK(docs[2] == "para three");
}

TEST_CASE("JSON lines documents and their errors") {
  temp_dir dir;
  CHECK(read_documents(dir.write("a.jsonl", "{\"text\": \"a\"}\n\n{\"text\": \"b\\n\", \"id\": 3}\n")) ==
        std::vector<std::string>{"a", "b\n"});
  CHECK(error_of([&] { read_documents(dir.write("b.jsonl", "{\"text\": \"a\"}\n{oops\n")); }).find("b.jsonl:2: not a JSON line") !=
        std::string::npos);
  CHECK(error_of([&] { read_documents(dir.write("c.jsonl", "{\"body\": \"a\"}\n")); }).find("c.jsonl:1: a JSON line needs") !=
        std::string::npos);
}

TEST_CASE("unreadable, empty and non-UTF-8 text files are clear errors") {
  temp_dir dir;
  CHECK(error_of([&] { read_documents(dir.path / "missing.txt"); }).find("missing.txt: cannot open") != std::string::npos);
  CHECK(error_of([&] { read_documents(dir.write("e.txt", "")); }).find("e.txt: contains no text") != std::string::npos);
  CHECK(error_of([&] { read_documents(dir.write("w.txt", " \n\n\t\n")); }).find("contains no text") != std::string::npos);
  CHECK(error_of([&] { read_documents(dir.write("u.txt", "caf\xc3\xa9 \xe9t\xe9")); })
            .find("u.txt: invalid UTF-8 at byte offset 6") != std::string::npos);
}

TEST_CASE("one file: the evaluation windows come from held-out whole documents") {
  temp_dir dir;
  const auto tok = tokenizer::from_file(fixture);
  std::vector<std::string> docs;
  for (int k = 0; k < 40; ++k) docs.push_back(cjk_document(k));
  const auto file = dir.write("docs.jsonl", json_lines(docs));

  const window_counts counts{16, 10, 6};
  const auto w = make_calibration_windows(tok, file, std::nullopt, counts, end_of_text);
  CHECK(w.calib.rows == 10);
  CHECK(w.eval.rows == 6);
  CHECK(w.calib.ids.size() == 160);
  CHECK(w.eval.ids.size() == 96);

  const auto signature = signatures(tok, docs);
  const auto calib_docs = documents_seen(w.calib, signature);
  const auto eval_docs = documents_seen(w.eval, signature);
  REQUIRE_FALSE(calib_docs.empty());
  REQUIRE_FALSE(eval_docs.empty());
  CHECK(*calib_docs.rbegin() < *eval_docs.begin());  // disjoint, eval from the tail

  // Every window is contiguous text of the documents joined by <|end_of_text|>.
  ids stream;
  for (const auto& d : docs) {
    if (!stream.empty()) stream.push_back(end_of_text);
    const auto e = tok.encode(d);
    stream.insert(stream.end(), e.begin(), e.end());
  }
  for (std::size_t r = 0; r < w.calib.rows; ++r) CHECK(is_slice_of(w.calib.row(r), stream));
  for (std::size_t r = 0; r < w.eval.rows; ++r) CHECK(is_slice_of(w.eval.row(r), stream));
  CHECK(std::count(w.calib.ids.begin(), w.calib.ids.end(), end_of_text) > 0);
}

TEST_CASE("paragraphs of a plain file are contiguous: all windows of a short file tile it") {
  temp_dir dir;
  const auto tok = tokenizer::from_file(fixture);
  const auto file = dir.write("p.txt", "def f(x):\n    return x\n\n\ndef g(y):\n    return y * 2\n\nprint(f(1), g(2))\n");
  ids stream;
  for (const auto& d : read_documents(file)) {
    const auto e = tok.encode(d);
    stream.insert(stream.end(), e.begin(), e.end());
  }
  const std::size_t seq_len = 8;
  const std::size_t all = stream.size() / seq_len;
  REQUIRE(all >= 2);
  const auto w = make_calibration_windows(tok, file, std::nullopt, {seq_len, all, 0}, end_of_text);
  CHECK(w.eval.rows == 0);
  CHECK(w.calib.ids == ids(stream.begin(), stream.begin() + static_cast<std::ptrdiff_t>(all * seq_len)));
}

TEST_CASE("two files: each side reads its own file; evaluation documents the calibration holds are dropped and counted") {
  temp_dir dir;
  const auto tok = tokenizer::from_file(fixture);
  std::vector<std::string> calib_docs, eval_docs;
  for (int k = 0; k < 10; ++k) calib_docs.push_back(cjk_document(k));
  for (int k = 10; k < 15; ++k) eval_docs.push_back(cjk_document(k));
  const auto calib_file = dir.write("calib.jsonl", json_lines(calib_docs));
  const auto eval_file = dir.write("eval.jsonl", json_lines(eval_docs));
  const auto w = make_calibration_windows(tok, calib_file, eval_file, {16, 4, 3}, end_of_text);
  auto all_docs = calib_docs;
  all_docs.insert(all_docs.end(), eval_docs.begin(), eval_docs.end());
  const auto signature = signatures(tok, all_docs);
  for (int k : documents_seen(w.calib, signature)) CHECK(k < 10);
  for (int k : documents_seen(w.eval, signature)) CHECK(k >= 10);

  CHECK(w.eval_origin.dropped_documents == 0);

  // Two of the calibration's documents also in the evaluation file: evaluated windows never contain them.
  eval_docs.insert(eval_docs.begin() + 2, calib_docs[3]);
  eval_docs.push_back(calib_docs[7]);
  const auto leaky = dir.write("leaky.jsonl", json_lines(eval_docs));
  const auto l = make_calibration_windows(tok, calib_file, leaky, {16, 4, 3}, end_of_text);
  CHECK(l.eval_origin.dropped_documents == 2);
  CHECK(l.eval_origin.documents == 5);
  for (int k : documents_seen(l.eval, signature)) CHECK(k >= 10);
  CHECK(l.eval.ids == w.eval.ids);  // what is left is the evaluation file without them

  // Nothing left once every evaluation document is a calibration one: an error naming both files.
  const auto copy = dir.write("copy.jsonl", json_lines({calib_docs[1], calib_docs[4]}));
  const auto all_shared = error_of([&] { make_calibration_windows(tok, calib_file, copy, {16, 4, 3}, end_of_text); });
  CHECK(all_shared.find("copy.jsonl: every document also occurs in") != std::string::npos);
  CHECK(all_shared.find("calib.jsonl") != std::string::npos);
}

TEST_CASE("too little text for the requested windows is a clear error") {
  temp_dir dir;
  const auto tok = tokenizer::from_file(fixture);
  const auto file = dir.write("short.jsonl", json_lines({cjk_document(0), cjk_document(1), cjk_document(2)}));
  const auto need = error_of([&] { make_calibration_windows(tok, file, std::nullopt, {16, 100, 0}, end_of_text); });
  CHECK(need.find("short.jsonl (calibration part): needs 100 windows of 16 tokens") != std::string::npos);
  const auto hold = error_of([&] { make_calibration_windows(tok, file, std::nullopt, {16, 1, 100}, end_of_text); });
  CHECK(hold.find("short.jsonl: too little text to hold out 1600 evaluation tokens") != std::string::npos);
  const auto combining = dir.write("nfc.jsonl", json_lines({cjk_document(0), "cafe\u0301"}));
  CHECK(error_of([&] { make_calibration_windows(tok, combining, std::nullopt, {4, 1, 0}, end_of_text); })
            .find("nfc.jsonl: document 1: text at byte offset 4 has code point U+0301") != std::string::npos);
  const auto one = dir.write("one.txt", "a single paragraph without blank lines\n");
  CHECK(error_of([&] { make_calibration_windows(tok, one, std::nullopt, {4, 1, 1}, end_of_text); })
            .find("too little text to hold out") != std::string::npos);
}
