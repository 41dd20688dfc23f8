// safetensors container: the spec's byte-exact example, the reference writer's tensor order, write -> read
// round trips for every dtype, sharded checkpoints, and every corruption giving one format_error.
#include <doctest/doctest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <pq/io/model_dir.hpp>
#include <pq/io/safetensors.hpp>

namespace fs = std::filesystem;
using namespace pq;
using io::format_error;

namespace {
std::vector<std::byte> read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::vector<char> c((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::byte> b(c.size());
  std::memcpy(b.data(), c.data(), c.size());
  return b;
}

// A file from a raw header (length prefix = header size) and a data buffer, for corruption tests.
std::vector<std::byte> raw_file(const std::string& header, std::size_t data_bytes, std::uint64_t n = ~0ull) {
  if (n == ~0ull) n = header.size();
  std::vector<std::byte> f(8 + header.size() + data_bytes, std::byte{0x11});
  std::memcpy(f.data(), &n, 8);
  std::memcpy(f.data() + 8, header.data(), header.size());
  return f;
}

io::safetensors_file parse(const std::vector<std::byte>& f) { return io::safetensors_file::parse(f, "bad.safetensors"); }

std::vector<std::byte> random_bytes(std::size_t n, std::mt19937& rng) {
  std::vector<std::byte> b(n);
  for (auto& x : b) x = static_cast<std::byte>(rng() & 0xff);
  return b;
}

struct tmp_dir {
  fs::path path;
  explicit tmp_dir(const std::string& name) : path(fs::temp_directory_path() / name) {
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~tmp_dir() { fs::remove_all(path); }
};

constexpr dtype all_dtypes[] = {dtype::BOOL,        dtype::F4,          dtype::F6_E2M3, dtype::F6_E3M2, dtype::U8,
                                dtype::I8,          dtype::F8_E5M2,     dtype::F8_E4M3, dtype::F8_E8M0, dtype::F8_E4M3FNUZ,
                                dtype::F8_E5M2FNUZ, dtype::I16,         dtype::U16,     dtype::F16,     dtype::BF16,
                                dtype::I32,         dtype::U32,         dtype::F32,     dtype::C64,     dtype::F64,
                                dtype::I64,         dtype::U64};
}  // namespace

TEST_CASE("the spec's 100-byte example (section 1.5), byte for byte") {
  const std::string header = R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
  REQUIRE(header.size() == 85);
  std::vector<std::byte> expect(100);
  const unsigned char prefix[8] = {0x58, 0, 0, 0, 0, 0, 0, 0};
  std::memcpy(expect.data(), prefix, 8);
  std::memcpy(expect.data() + 8, header.data(), 85);
  for (int i = 93; i < 96; ++i) expect[i] = std::byte{0x20};
  const unsigned char one[4] = {0x00, 0x00, 0x80, 0x3F};
  std::memcpy(expect.data() + 96, one, 4);

  tmp_dir tmp("pq_test_st_example");
  {
    io::safetensors_writer w(tmp.path / "a.safetensors", {{"a", dtype::F32, {1}}}, {{"format", "pt"}});
    const float v = 1.0f;
    w.write("a", std::as_bytes(std::span(&v, 1)));
    w.close();
  }
  CHECK(read_bytes(tmp.path / "a.safetensors") == expect);

  const auto f = io::safetensors_file::parse(expect, "example");
  REQUIRE(f.tensors().size() == 1);
  CHECK(f.metadata().at("format") == "pt");
  CHECK(io::to_float(f.at("a")) == std::vector<float>{1.0f});
}

TEST_CASE("every dtype round-trips, laid out in the reference writer's order (section 1.4)") {
  // The order the spec lists, largest alignment first: U64, I64, F64, C64, F32, ... BOOL last.
  const std::vector<std::string> spec_order = {"U64",     "I64",         "F64",         "C64", "F32", "U32", "I32", "BF16",
                                               "F16",     "U16",         "I16",         "F8_E5M2FNUZ", "F8_E4M3FNUZ",
                                               "F8_E8M0", "F8_E4M3",     "F8_E5M2",     "I8",  "U8",  "F6_E3M2", "F6_E2M3",
                                               "F4",      "BOOL"};
  std::mt19937 rng(7);
  std::vector<io::tensor_decl> decls;
  std::map<std::string, std::vector<std::byte>> content;
  for (dtype t : all_dtypes) {
    // Names in reverse alphabetical order of dtype so that only the dtype rule can produce the spec order;
    // a second tensor per dtype checks the name tie-break, a scalar and an empty tensor check edge shapes.
    const std::string base = "t_" + std::string(to_string(t));
    for (const auto& [suffix, shape] : std::vector<std::pair<std::string, std::vector<std::int64_t>>>{
             {".b", {2, 4}}, {".a", {3, 8}}, {".empty", {0, 5}}}) {
      decls.push_back({base + suffix, t, shape});
      content[base + suffix] = random_bytes(decls.back().bytes(), rng);
    }
  }
  tmp_dir tmp("pq_test_st_dtypes");
  const fs::path file = tmp.path / "all.safetensors";
  {
    io::safetensors_writer w(file, decls);
    for (auto it = decls.rbegin(); it != decls.rend(); ++it) w.write(it->name, content[it->name]);  // any order
    w.close();
  }
  const auto f = io::safetensors_file::open(file);
  REQUIRE(f.tensors().size() == decls.size());
  for (const auto& d : decls) {
    CAPTURE(d.name);
    const auto& t = f.at(d.name);
    CHECK(t.type == d.type);
    CHECK(t.shape == d.shape);
    CHECK(std::equal(t.data.begin(), t.data.end(), content[d.name].begin(), content[d.name].end()));
  }
  // File order: by data offset, non-empty tensors follow the spec's dtype list, names ascending within one.
  std::vector<const io::tensor_view*> by_offset;
  for (const auto& t : f.tensors())
    if (!t.data.empty()) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(), [](auto* a, auto* b) { return a->data.data() < b->data.data(); });
  REQUIRE(by_offset.size() == 2 * spec_order.size());
  for (std::size_t i = 0; i < spec_order.size(); ++i) {
    CHECK(to_string(by_offset[2 * i]->type) == spec_order[i]);
    CHECK(by_offset[2 * i]->name.ends_with(".a"));
    CHECK(by_offset[2 * i + 1]->name.ends_with(".b"));
  }
  // Every tensor starts naturally aligned in the file (the header is padded to 8).
  const auto whole = read_bytes(file);
  std::uint64_t n;
  std::memcpy(&n, whole.data(), 8);
  CHECK(n % 8 == 0);
  CHECK(static_cast<char>(whole[8]) == '{');
}

TEST_CASE("a scalar (shape []) and names needing JSON escapes round-trip") {
  tmp_dir tmp("pq_test_st_scalar");
  const std::string odd = "q\"uo\\te/\xc3\xa9\t";
  {
    io::safetensors_writer w(tmp.path / "s.safetensors", {{"s", dtype::F32, {}}, {odd, dtype::U8, {1}}});
    const float v = 2.5f;
    const std::byte b{7};
    w.write("s", std::as_bytes(std::span(&v, 1)));
    w.write(odd, std::span(&b, 1));
    w.close();
  }
  const auto f = io::safetensors_file::open(tmp.path / "s.safetensors");
  CHECK(f.at("s").shape.empty());
  CHECK(f.at("s").numel() == 1);
  CHECK(io::to_float(f.at("s")) == std::vector<float>{2.5f});
  CHECK(f.at(odd).data[0] == std::byte{7});
}

TEST_CASE("to_float decodes F16 and BF16 bit patterns") {
  const std::uint16_t f16[] = {0x3C00, 0xC000, 0x0001, 0x7BFF, 0x7C00, 0x8000};
  const std::uint16_t bf16[] = {0x3F80, 0xC040, 0x0001};
  io::tensor_view h{"h", dtype::F16, {6}, std::as_bytes(std::span(f16))};
  io::tensor_view b{"b", dtype::BF16, {3}, std::as_bytes(std::span(bf16))};
  const auto hv = io::to_float(h), bv = io::to_float(b);
  CHECK(hv[0] == 1.0f);
  CHECK(hv[1] == -2.0f);
  CHECK(hv[2] == std::ldexp(1.0f, -24));
  CHECK(hv[3] == 65504.0f);
  CHECK(std::isinf(hv[4]));
  CHECK(std::signbit(hv[5]));
  CHECK(bv[0] == 1.0f);
  CHECK(bv[1] == -3.0f);
  CHECK(bv[2] == std::ldexp(1.0f, -133));
  io::tensor_view i{"ids", dtype::I32, {3}, std::as_bytes(std::span(f16)).first(12)};
  CHECK_THROWS_WITH_AS(io::to_float(i), doctest::Contains("'ids' has dtype I32"), format_error);
}

TEST_CASE("writer misuse is an error naming the file and tensor") {
  tmp_dir tmp("pq_test_st_writer");
  const fs::path p = tmp.path / "w.safetensors";
  const std::byte four[4]{};
  CHECK_THROWS_WITH_AS(io::safetensors_writer(p, {{"x", dtype::F32, {1}}, {"x", dtype::F16, {2}}}),
                       doctest::Contains("duplicate tensor 'x'"), format_error);
  io::safetensors_writer w(p, {{"x", dtype::F32, {1}}, {"y", dtype::F16, {2}}});
  CHECK_THROWS_WITH_AS(w.write("z", four), doctest::Contains("'z' was not declared"), format_error);
  CHECK_THROWS_WITH_AS(w.write("x", std::span(four, 2)), doctest::Contains("'x' needs 4 bytes, got 2"), format_error);
  w.write("x", four);
  CHECK_THROWS_WITH_AS(w.write("x", four), doctest::Contains("'x' written twice"), format_error);
  CHECK_THROWS_WITH_AS(w.close(), doctest::Contains("tensor 'y' unwritten"), format_error);
}

TEST_CASE("sharded checkpoints: size cap, index, read back through model_dir") {
  tmp_dir tmp("pq_test_st_shards");
  std::ofstream(tmp.path / "config.json") << "{}";
  std::mt19937 rng(3);
  std::vector<io::tensor_decl> decls;
  std::map<std::string, std::vector<std::byte>> content;
  for (int i = 0; i < 10; ++i) {
    decls.push_back({"layer." + std::to_string(i) + ".w", i % 2 ? dtype::BF16 : dtype::F32, {16, 8 + i}});
    content[decls.back().name] = random_bytes(decls.back().bytes(), rng);
  }
  decls.push_back({"huge", dtype::U8, {2000}});  // larger than the cap: a shard of its own
  content["huge"] = random_bytes(2000, rng);
  const std::uint64_t cap = 1200;
  io::checkpoint_writer w(tmp.path, decls, cap);
  for (const auto& d : decls) w.write(d.name, content[d.name]);
  w.finish();

  const auto index = io::read_json_file(tmp.path / "model.safetensors.index.json");
  std::uint64_t total = 0;
  for (const auto& d : decls) total += d.bytes();
  CHECK(index["metadata"]["total_size"].get<std::uint64_t>() == total);
  CHECK(index["weight_map"].size() == decls.size());
  const auto k = w.shard_names().size();
  CHECK(k > 2);
  for (std::size_t i = 0; i < k; ++i) {
    char name[64];
    std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", i + 1, k);
    CHECK(w.shard_names()[i] == name);
    const auto f = io::safetensors_file::open(tmp.path / name);
    std::uint64_t bytes = 0;
    for (const auto& t : f.tensors()) {
      bytes += t.data.size();
      CHECK(index["weight_map"][t.name] == name);
    }
    CHECK((bytes <= cap || f.tensors().size() == 1));
  }
  const auto dir = io::model_dir::open(tmp.path);
  CHECK(dir.tensor_names().size() == decls.size());
  for (const auto& d : decls) {
    const auto& t = dir.tensor(d.name);
    CHECK(std::equal(t.data.begin(), t.data.end(), content[d.name].begin(), content[d.name].end()));
  }
}

TEST_CASE("every truncation of a valid file is an error, never a crash") {
  tmp_dir tmp("pq_test_st_trunc");
  {
    io::safetensors_writer w(tmp.path / "v.safetensors", {{"a", dtype::F32, {2}}, {"b", dtype::BF16, {3}}}, {{"format", "pt"}});
    const std::byte a[8]{}, b[6]{};
    w.write("a", a);
    w.write("b", b);
    w.close();
  }
  const auto whole = read_bytes(tmp.path / "v.safetensors");
  CHECK_NOTHROW(parse(whole));
  for (std::size_t n = 0; n < whole.size(); ++n) {
    CAPTURE(n);
    const std::vector<std::byte> cut(whole.begin(), whole.begin() + static_cast<std::ptrdiff_t>(n));
    CHECK_THROWS_WITH_AS(parse(cut), doctest::Contains("bad.safetensors: "), format_error);
  }
}

TEST_CASE("header corruptions are one format_error naming the file and tensor") {
  const auto bad = [](const std::string& header, std::size_t data, const char* what) {
    CAPTURE(header);
    CHECK_THROWS_WITH_AS(parse(raw_file(header, data)), doctest::Contains(what), format_error);
  };
  const std::string ok = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  CHECK_NOTHROW(parse(raw_file(ok, 8)));
  CHECK_NOTHROW(parse(raw_file(ok + "    ", 8)));                                                        // padding
  CHECK_NOTHROW(parse(raw_file(R"({"z":{"dtype":"U8","shape":[0,3],"data_offsets":[0,0]}})", 0)));       // empty
  CHECK_NOTHROW(parse(raw_file(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]},)"
                               R"("b":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})", 2)));           // any order

  CHECK_THROWS_WITH_AS(parse(raw_file(ok, 8, 1ull << 62)), doctest::Contains("exceeds the 100000000-byte limit"), format_error);
  CHECK_THROWS_WITH_AS(parse(raw_file(ok, 8, 100'000'001)), doctest::Contains("exceeds"), format_error);
  CHECK_THROWS_WITH_AS(parse(raw_file(ok, 8, ok.size() + 9)), doctest::Contains("runs past the end"), format_error);
  bad(" " + ok, 8, "does not start with '{'");
  bad(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})", 8, "not valid JSON");
  bad(ok + "x", 8, "not valid JSON");
  bad(std::string(R"({"a)") + "\xff" + R"(":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 8, "not valid JSON");
  bad(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
      16, "duplicate key 'a'");
  bad(R"({"a":{"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 8, "duplicate key 'dtype'");
  bad(R"({"__metadata__":{"k":"v","k":"w"}})", 0, "duplicate key 'k'");
  bad(R"({"__metadata__":{"k":1}})", 0, "__metadata__ value 'k' is not a string");
  bad(R"({"__metadata__":"x"})", 0, "__metadata__ is not an object");
  bad(R"({"a":[1]})", 0, "tensor 'a': entry is not an object");
  bad(R"({"a":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}})", 8, "tensor 'a': unknown dtype 'F33'");
  bad(R"({"a":{"shape":[2],"data_offsets":[0,8]}})", 8, "tensor 'a': missing or non-string dtype");
  bad(R"({"a":{"dtype":"F32","data_offsets":[0,8]}})", 8, "tensor 'a': missing or non-array shape");
  bad(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8, "tensor 'a': shape entries must be non-negative");
  bad(R"({"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})", 8, "tensor 'a': shape entries must be non-negative");
  bad(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", 8, "tensor 'a': element count overflows");
  bad(R"({"a":{"dtype":"F32","shape":[2]}})", 8, "tensor 'a': data_offsets must be two");
  bad(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", 8, "tensor 'a': data_offsets must be two");
  bad(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", 8, "tensor 'a': data_offsets end before");
  bad(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"extra":1}})", 8, "tensor 'a': unknown field 'extra'");
  bad(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8, "tensor 'a': has 8 bytes but shape x dtype needs 12");
  bad(R"({"a":{"dtype":"F4","shape":[3],"data_offsets":[0,1]}})", 1, "tensor 'a': size is not a whole number of bytes");
  bad(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})", 8, "tensor 'a': data_offsets run past the end");
  bad(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12, "tensor 'a': data_offsets leave a gap");
  bad(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12,
      "tensor 'b': data_offsets overlap");
  bad(ok, 9, "1 trailing bytes");
}

TEST_CASE("every single-byte corruption of a header is handled (an error or a valid file), never a crash") {
  const std::string header =
      R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
      R"("b":{"dtype":"BF16","shape":[1,3],"data_offsets":[8,14]}})";
  const auto good = raw_file(header, 14);
  CHECK(parse(good).tensors().size() == 2);
  std::size_t errors = 0, valid = 0;
  for (std::size_t i = 0; i < header.size(); ++i)
    for (unsigned char v : {'\0', '"', '9', '{', ']', '\xc3', '\xff'}) {
      auto f = good;
      f[8 + i] = static_cast<std::byte>(v);
      try {
        const auto st = parse(f);
        for (const auto& t : st.tensors())  // what parses must be consistent
          CHECK(static_cast<std::uint64_t>(t.numel()) * dtype_bits(t.type) / 8 == t.data.size());
        ++valid;
      } catch (const format_error& e) {
        CHECK(std::string(e.what()).starts_with("bad.safetensors: "));
        ++errors;
      }
    }
  MESSAGE(errors << " corrupted headers rejected, " << valid << " still valid");
  CHECK(errors > valid);
}
