// pq/io/safetensors.hpp: the safetensors container: a validating, memory-mapped, zero-copy reader and a
// streaming writer whose bytes match the reference Python writer (header order, compact JSON, padding).
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <pq/core/bf16.hpp>
#include <pq/core/dtype.hpp>
#include <pq/error.hpp>

namespace pq::io {

struct format_error : pq::error {
  using pq::error::error;
};

inline constexpr std::uint64_t max_header_bytes = 100'000'000;  // safetensors' MAX_HEADER_SIZE

struct tensor_view {
  std::string name;
  dtype type;
  std::vector<std::int64_t> shape;
  std::span<const std::byte> data;
  std::int64_t numel() const {
    std::int64_t n = 1;
    for (auto d : shape) n *= d;
    return n;
  }
};

// A read-only memory mapping of a whole file.
class mapped_file {
 public:
  explicit mapped_file(const std::filesystem::path& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw format_error(path.string() + ": cannot open (" + std::strerror(errno) + ")");
    struct stat st{};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(fd);
      throw format_error(path.string() + ": not a regular file");
    }
    size_ = static_cast<std::size_t>(st.st_size);
    if (size_ > 0) {
      void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
      if (p == MAP_FAILED) {
        ::close(fd);
        throw format_error(path.string() + ": cannot map (" + std::strerror(errno) + ")");
      }
      data_ = static_cast<const std::byte*>(p);
    }
    ::close(fd);
  }
  mapped_file(const mapped_file&) = delete;
  mapped_file& operator=(const mapped_file&) = delete;
  ~mapped_file() {
    if (data_) ::munmap(const_cast<std::byte*>(data_), size_);
  }
  std::span<const std::byte> bytes() const { return {data_, size_}; }

 private:
  const std::byte* data_ = nullptr;
  std::size_t size_ = 0;
};

// A validated safetensors file. Every rule of the spec (§1.1, §1.2) is checked on open; any violation
// throws format_error naming the file and, where there is one, the tensor.
class safetensors_file {
 public:
  static safetensors_file open(const std::filesystem::path& path) {
    auto map = std::make_shared<mapped_file>(path);
    return safetensors_file(path, std::move(map));
  }
  // Parses bytes owned by the caller (tests, fuzzing); `name` is used in messages.
  static safetensors_file parse(std::span<const std::byte> bytes, const std::string& name) {
    return safetensors_file(name, bytes);
  }

  const tensor_view* find(std::string_view name) const {
    const auto it = index_.find(std::string(name));
    return it == index_.end() ? nullptr : &tensors_[it->second];
  }
  const tensor_view& at(std::string_view name) const {
    if (const auto* t = find(name)) return *t;
    throw format_error(path_ + ": no tensor '" + std::string(name) + "'");
  }
  std::span<const tensor_view> tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::string& path() const { return path_; }

 private:
  safetensors_file(const std::filesystem::path& path, std::shared_ptr<mapped_file> map)
      : path_(path.string()), map_(std::move(map)) {
    load(map_->bytes());
  }
  safetensors_file(std::string name, std::span<const std::byte> bytes) : path_(std::move(name)) { load(bytes); }

  [[noreturn]] void fail(const std::string& what) const { throw format_error(path_ + ": " + what); }

  // nlohmann::json keeps the last of duplicate keys silently; the spec forbids them, at any depth.
  nlohmann::json::parser_callback_t duplicate_key_check() const {
    auto open = std::make_shared<std::vector<std::set<std::string>>>();
    return [this, open](int, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
      using ev = nlohmann::json::parse_event_t;
      if (event == ev::object_start) open->emplace_back();
      else if (event == ev::object_end) open->pop_back();
      else if (event == ev::key && !open->empty()) {
        const auto& key = parsed.get_ref<const std::string&>();
        if (!open->back().insert(key).second) fail("duplicate key '" + key + "' in the header");
      }
      return true;
    };
  }

  void load(std::span<const std::byte> file) {
    if (file.size() < 8) fail("file is shorter than the 8-byte header length");
    std::uint64_t n = 0;
    std::memcpy(&n, file.data(), 8);
    if (n > max_header_bytes) fail("header length " + std::to_string(n) + " exceeds the 100000000-byte limit");
    if (n > file.size() - 8) fail("header length " + std::to_string(n) + " runs past the end of the file");
    const std::string_view header(reinterpret_cast<const char*>(file.data() + 8), n);
    if (header.empty() || header.front() != '{') fail("header does not start with '{'");
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(header, duplicate_key_check());  // also rejects invalid UTF-8, trailing garbage
    } catch (const nlohmann::json::exception& e) {
      fail(std::string("header is not valid JSON: ") + e.what());
    }
    if (!j.is_object()) fail("header is not a JSON object");
    const std::span<const std::byte> buffer = file.subspan(8 + n);
    struct extent { std::uint64_t begin, end; std::size_t tensor; };
    std::vector<extent> extents;
    for (auto it = j.begin(); it != j.end(); ++it) {
      const std::string& name = it.key();
      const auto& v = it.value();
      if (name == "__metadata__") {
        if (!v.is_object()) fail("__metadata__ is not an object");
        for (auto m = v.begin(); m != v.end(); ++m) {
          if (!m.value().is_string()) fail("__metadata__ value '" + m.key() + "' is not a string");
          metadata_[m.key()] = m.value().get<std::string>();
        }
        continue;
      }
      const auto where = "tensor '" + name + "': ";
      if (!v.is_object()) fail(where + "entry is not an object");
      for (auto f = v.begin(); f != v.end(); ++f)
        if (f.key() != "dtype" && f.key() != "shape" && f.key() != "data_offsets") fail(where + "unknown field '" + f.key() + "'");
      if (!v.contains("dtype") || !v["dtype"].is_string()) fail(where + "missing or non-string dtype");
      const auto type = dtype_from_string(v["dtype"].get<std::string>());
      if (!type) fail(where + "unknown dtype '" + v["dtype"].get<std::string>() + "'");
      if (!v.contains("shape") || !v["shape"].is_array()) fail(where + "missing or non-array shape");
      std::vector<std::int64_t> shape;
      std::uint64_t elems = 1;
      for (const auto& d : v["shape"]) {
        if (!d.is_number_unsigned()) fail(where + "shape entries must be non-negative integers");
        const auto x = d.get<std::uint64_t>();
        if (x > (1ull << 62)) fail(where + "absurd dimension " + std::to_string(x));
        shape.push_back(static_cast<std::int64_t>(x));
        if (__builtin_mul_overflow(elems, x, &elems) || elems > (1ull << 56)) fail(where + "element count overflows");
      }
      const auto& off = v.contains("data_offsets") ? v["data_offsets"] : nlohmann::json();
      if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
        fail(where + "data_offsets must be two non-negative integers");
      const auto b = off[0].get<std::uint64_t>(), e = off[1].get<std::uint64_t>();
      if (e < b) fail(where + "data_offsets end before they begin");
      const std::uint64_t bits = elems * dtype_bits(*type);
      if (bits % 8) fail(where + "size is not a whole number of bytes");
      if (bits / 8 != e - b)
        fail(where + "has " + std::to_string(e - b) + " bytes but shape x dtype needs " +
             std::to_string(bits / 8));
      if (e > buffer.size()) fail(where + "data_offsets run past the end of the file");
      if (index_.contains(name)) fail(where + "duplicate name");
      index_[name] = tensors_.size();
      extents.push_back({b, e, tensors_.size()});
      tensors_.push_back({name, *type, std::move(shape), buffer.subspan(b, e - b)});
    }
    std::sort(extents.begin(), extents.end(), [](const extent& a, const extent& b) {
      return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
    });
    std::uint64_t pos = 0;
    for (const auto& x : extents) {
      if (x.begin != pos)
        fail("tensor '" + tensors_[x.tensor].name + "': data_offsets " +
             (x.begin < pos ? "overlap the previous tensor" : "leave a gap after the previous tensor"));
      pos = x.end;
    }
    if (pos != buffer.size()) fail("tensors do not cover the data buffer exactly (" + std::to_string(buffer.size() - pos) +
                                   " trailing bytes)");
  }

  std::string path_;
  std::shared_ptr<mapped_file> map_;
  std::vector<tensor_view> tensors_;
  std::map<std::string, std::size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// fp32 values of a floating-point tensor (F32, F16, BF16).
inline std::vector<float> to_float(const tensor_view& t) {
  const auto n = static_cast<std::size_t>(t.numel());
  std::vector<float> out(n);
  switch (t.type) {
    case dtype::F32: std::memcpy(out.data(), t.data.data(), n * 4); break;
    case dtype::BF16:
      for (std::size_t i = 0; i < n; ++i) {
        std::uint16_t b;
        std::memcpy(&b, t.data.data() + 2 * i, 2);
        out[i] = bf16::decode(b);
      }
      break;
    case dtype::F16:
      for (std::size_t i = 0; i < n; ++i) {
        std::uint16_t h;
        std::memcpy(&h, t.data.data() + 2 * i, 2);
        const std::uint32_t sign = (h & 0x8000u) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff;
        float v;
        if (e == 0) v = std::ldexp(static_cast<float>(m), -24);
        else if (e == 31) v = m ? quiet_nan() : infinity();
        else v = std::ldexp(static_cast<float>(m | 0x400u), static_cast<int>(e) - 25);
        out[i] = sign ? -v : v;
      }
      break;
    default:
      throw format_error("tensor '" + t.name + "' has dtype " + std::string(to_string(t.type)) +
                         ", not a floating-point weight type (F32, F16, BF16)");
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Writing. A file's header precedes its data, so tensors are declared (name, dtype, shape) first and
// their bytes then streamed in declaration order; nothing is held in memory beyond one tensor.

struct tensor_decl {
  std::string name;
  dtype type;
  std::vector<std::int64_t> shape;
  std::uint64_t bytes() const {
    std::uint64_t n = 1;
    for (auto d : shape) n *= static_cast<std::uint64_t>(d);
    return n * dtype_bits(type) / 8;
  }
};

// The header bytes of the reference writer for tensors in *file order* (see order_like_reference),
// padded with spaces to a multiple of 8.
inline std::string make_header(std::span<const tensor_decl> tensors, const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json m = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) m[k] = v;
    j["__metadata__"] = m;
  }
  std::uint64_t pos = 0;
  for (const auto& t : tensors) {
    nlohmann::ordered_json e = nlohmann::ordered_json::object();
    e["dtype"] = std::string(to_string(t.type));
    e["shape"] = t.shape;
    e["data_offsets"] = {pos, pos + t.bytes()};
    pos += t.bytes();
    j[t.name] = e;
  }
  std::string h = j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::strict);
  h.append((8 - h.size() % 8) % 8, ' ');
  return h;
}

// The reference order: dtype descending (safetensors' Dtype enum), then name ascending.
inline void order_like_reference(std::vector<tensor_decl>& tensors) {
  std::stable_sort(tensors.begin(), tensors.end(), [](const tensor_decl& a, const tensor_decl& b) {
    return a.type != b.type ? a.type > b.type : a.name < b.name;
  });
}

// Writes one file. Every tensor is declared up front, so the header and each tensor's offset are known;
// tensors are then written in any order, each straight to its place, and nothing is buffered.
class safetensors_writer {
 public:
  safetensors_writer(const std::filesystem::path& path, std::vector<tensor_decl> tensors,
                     const std::map<std::string, std::string>& metadata = {})
      : path_(path), tensors_(std::move(tensors)) {
    order_like_reference(tensors_);
    const std::string h = make_header(tensors_, metadata);
    std::uint64_t pos = 8 + h.size();
    for (std::size_t i = 0; i < tensors_.size(); ++i) {
      if (!slots_.emplace(tensors_[i].name, slot{pos, tensors_[i].bytes(), false}).second)
        throw format_error(path.string() + ": duplicate tensor '" + tensors_[i].name + "'");
      pos += tensors_[i].bytes();
    }
    out_.open(path, std::ios::binary | std::ios::trunc | std::ios::out);
    if (!out_) throw format_error(path.string() + ": cannot create");
    const std::uint64_t n = h.size();
    out_.write(reinterpret_cast<const char*>(&n), 8);
    out_.write(h.data(), static_cast<std::streamsize>(h.size()));
    check();
  }

  void write(std::string_view name, std::span<const std::byte> bytes) {
    const auto it = slots_.find(std::string(name));
    if (it == slots_.end()) throw format_error(path_.string() + ": tensor '" + std::string(name) + "' was not declared");
    slot& s = it->second;
    if (s.written) throw format_error(path_.string() + ": tensor '" + std::string(name) + "' written twice");
    if (bytes.size() != s.bytes)
      throw format_error(path_.string() + ": tensor '" + std::string(name) + "' needs " + std::to_string(s.bytes) +
                         " bytes, got " + std::to_string(bytes.size()));
    out_.seekp(static_cast<std::streamoff>(s.offset));
    out_.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    check();
    s.written = true;
  }

  bool declares(std::string_view name) const { return slots_.contains(std::string(name)); }

  void close() {
    for (const auto& [name, s] : slots_)
      if (!s.written) throw format_error(path_.string() + ": closed with tensor '" + name + "' unwritten");
    out_.flush();
    check();
    out_.close();
  }

  std::span<const tensor_decl> tensors() const { return tensors_; }

 private:
  struct slot {
    std::uint64_t offset, bytes;
    bool written;
  };
  void check() {
    if (!out_) throw format_error(path_.string() + ": write failed (disk full?)");
  }
  std::filesystem::path path_;
  std::vector<tensor_decl> tensors_;
  std::map<std::string, slot> slots_;
  std::fstream out_;
};

// A sharded checkpoint: tensors declared in production order are split into shards of at most
// `max_shard_bytes` (a larger tensor gets a shard of its own), named model-0000i-of-0000K.safetensors
// (model.safetensors when one suffices), with model.safetensors.index.json as transformers writes it.
class checkpoint_writer {
 public:
  checkpoint_writer(const std::filesystem::path& dir, const std::vector<tensor_decl>& tensors,
                    std::uint64_t max_shard_bytes, std::map<std::string, std::string> metadata = {{"format", "pt"}})
      : dir_(dir) {
    std::vector<std::vector<tensor_decl>> shards(1);
    std::uint64_t size = 0;
    for (const auto& t : tensors) {
      if (size > 0 && size + t.bytes() > max_shard_bytes) {
        shards.emplace_back();
        size = 0;
      }
      shards.back().push_back(t);
      size += t.bytes();
      total_ += t.bytes();
    }
    const std::size_t k = shards.size();
    for (std::size_t i = 0; i < k; ++i) {
      char name[64];
      std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", i + 1, k);
      const std::string file = k == 1 ? "model.safetensors" : name;
      for (const auto& t : shards[i]) shard_of_[t.name] = files_.size();
      names_.push_back(file);
      files_.push_back(std::make_unique<safetensors_writer>(dir / file, shards[i], metadata));
    }
  }

  void write(std::string_view name, std::span<const std::byte> bytes) {
    const auto it = shard_of_.find(std::string(name));
    if (it == shard_of_.end()) throw format_error(dir_.string() + ": tensor '" + std::string(name) + "' was not declared");
    files_[it->second]->write(name, bytes);
  }

  // Closes every shard and writes the index (for more than one shard).
  void finish() {
    for (auto& f : files_) f->close();
    if (files_.size() > 1) {
      nlohmann::json index;
      index["metadata"]["total_size"] = total_;
      for (const auto& [tensor, shard] : shard_of_) index["weight_map"][tensor] = names_[shard];
      std::ofstream out(dir_ / "model.safetensors.index.json");
      out << index.dump(2) << "\n";
      if (!out) throw format_error((dir_ / "model.safetensors.index.json").string() + ": write failed");
    }
  }

  const std::vector<std::string>& shard_names() const { return names_; }

 private:
  std::filesystem::path dir_;
  std::vector<std::unique_ptr<safetensors_writer>> files_;
  std::vector<std::string> names_;
  std::map<std::string, std::size_t> shard_of_;
  std::uint64_t total_ = 0;
};

}  // namespace pq::io
