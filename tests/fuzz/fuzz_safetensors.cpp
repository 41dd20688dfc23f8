// libFuzzer target: any byte string given to the safetensors reader parses or throws format_error;
// what parses is consistent (every view inside the buffer, byte count = shape x dtype).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include <pq/io/safetensors.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  try {
    const auto f = pq::io::safetensors_file::parse(bytes, "fuzz");
    for (const auto& t : f.tensors()) {
      if (t.data.data() < bytes.data() || t.data.data() + t.data.size() > bytes.data() + bytes.size()) std::abort();
      if (static_cast<std::uint64_t>(t.numel()) * pq::dtype_bits(t.type) / 8 != t.data.size()) std::abort();
      volatile std::byte sink{};
      for (std::byte b : t.data) sink = b;
      if (t.type == pq::dtype::F32 || t.type == pq::dtype::F16 || t.type == pq::dtype::BF16) (void)pq::io::to_float(t);
    }
  } catch (const pq::io::format_error&) {
  }
  return 0;
}
