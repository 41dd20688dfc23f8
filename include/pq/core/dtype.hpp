// pq/core/dtype.hpp: element types of stored tensors, spelled as safetensors spells them.
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace pq {

// Ordered as the safetensors Rust `Dtype` enum (the reference writer sorts by it, descending).
enum class dtype : std::uint8_t {
  BOOL, F4, F6_E2M3, F6_E3M2, U8, I8, F8_E5M2, F8_E4M3, F8_E8M0, F8_E4M3FNUZ, F8_E5M2FNUZ,
  I16, U16, F16, BF16, I32, U32, F32, C64, F64, I64, U64,
};

constexpr std::string_view to_string(dtype t) {
  constexpr std::string_view names[] = {"BOOL", "F4", "F6_E2M3", "F6_E3M2", "U8", "I8", "F8_E5M2",
      "F8_E4M3", "F8_E8M0", "F8_E4M3FNUZ", "F8_E5M2FNUZ", "I16", "U16", "F16", "BF16", "I32", "U32",
      "F32", "C64", "F64", "I64", "U64"};
  return names[static_cast<std::size_t>(t)];
}

constexpr std::optional<dtype> dtype_from_string(std::string_view s) {
  for (int i = 0; i <= static_cast<int>(dtype::U64); ++i)
    if (to_string(static_cast<dtype>(i)) == s) return static_cast<dtype>(i);
  return std::nullopt;
}

constexpr std::size_t dtype_bits(dtype t) {
  switch (t) {
    case dtype::BOOL: case dtype::U8: case dtype::I8: case dtype::F8_E5M2: case dtype::F8_E4M3:
    case dtype::F8_E8M0: case dtype::F8_E4M3FNUZ: case dtype::F8_E5M2FNUZ: return 8;
    case dtype::F4: return 4;
    case dtype::F6_E2M3: case dtype::F6_E3M2: return 6;
    case dtype::I16: case dtype::U16: case dtype::F16: case dtype::BF16: return 16;
    case dtype::I32: case dtype::U32: case dtype::F32: return 32;
    case dtype::C64: case dtype::F64: case dtype::I64: case dtype::U64: return 64;
  }
  return 0;
}

}  // namespace pq
