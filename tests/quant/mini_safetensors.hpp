// tests/quant/mini_safetensors.hpp: a test-only reader of single safetensors files (BF16, F32, I32 to
// float or int), enough to feed real weights and tokens to the quant suites until pq::io is merged.
#pragma once
#include <cstdint>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace pq::test {

struct mini_safetensors {
  std::vector<char> bytes;
  nlohmann::json header;
  std::size_t data_start = 0;

  explicit mini_safetensors(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw std::runtime_error("cannot open " + path);
    bytes.assign(std::istreambuf_iterator<char>(f), {});
    std::uint64_t n = 0;
    std::memcpy(&n, bytes.data(), 8);
    header = nlohmann::json::parse(bytes.begin() + 8, bytes.begin() + 8 + static_cast<std::ptrdiff_t>(n));
    data_start = 8 + n;
  }
  bool has(const std::string& name) const { return header.contains(name); }
  std::vector<std::int64_t> shape(const std::string& name) const {
    return header.at(name).at("shape").get<std::vector<std::int64_t>>();
  }
  std::vector<float> floats(const std::string& name) const {
    const auto& t = header.at(name);
    const auto off = t.at("data_offsets").get<std::vector<std::size_t>>();
    const char* p = bytes.data() + data_start + off[0];
    const std::string dt = t.at("dtype");
    std::vector<float> out;
    if (dt == "BF16") {
      out.resize((off[1] - off[0]) / 2);
      for (std::size_t i = 0; i < out.size(); ++i) {
        std::uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        const std::uint32_t u = static_cast<std::uint32_t>(h) << 16;
        std::memcpy(&out[i], &u, 4);
      }
    } else if (dt == "F32") {
      out.resize((off[1] - off[0]) / 4);
      std::memcpy(out.data(), p, off[1] - off[0]);
    } else {
      throw std::runtime_error(name + ": unsupported dtype " + dt);
    }
    return out;
  }
  std::vector<std::int32_t> ints(const std::string& name) const {
    const auto& t = header.at(name);
    if (t.at("dtype") != "I32") throw std::runtime_error(name + ": not I32");
    const auto off = t.at("data_offsets").get<std::vector<std::size_t>>();
    std::vector<std::int32_t> out((off[1] - off[0]) / 4);
    std::memcpy(out.data(), bytes.data() + data_start + off[0], off[1] - off[0]);
    return out;
  }
};

}  // namespace pq::test
