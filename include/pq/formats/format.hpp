// pq/formats/format.hpp: the Format concept every quantization format policy models, and what is
// derived from a policy alone (stored bits, bits per weight, shape checks).
#pragma once
#include <array>
#include <concepts>
#include <cstdint>
#include <optional>
#include <ranges>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <pq/config.hpp>
#include <pq/core/bits.hpp>
#include <pq/core/dtype.hpp>
#include <pq/error.hpp>

namespace pq {

// Parameters of one quantization group, as stored and as used: `scale_code` is the stored block-scale
// code (E4M3 byte, E8M0 byte or BF16 bits), `scale` the effective multiplier it decodes to (for NVFP4
// already divided by the tensor's global scale), `zero` the integer zero point (asymmetric formats).
struct qparams {
  std::uint32_t scale_code = 0;
  float scale = 1.0f;
  std::int32_t zero = 0;
  friend constexpr bool operator==(const qparams&, const qparams&) = default;
};

// What a stored tensor holds; the packer derives each one's bytes from its role and dtype.
enum class tensor_role : std::uint8_t {
  codes,               // element codes: FP4 nibbles (U8), int32 bit streams (I32), raw bytes (F8), BF16 bits
  block_scale,         // one scale code per group
  zero_point,          // asymmetric zero points, packed down the rows (I32)
  global_scale,        // the decision unit's tensor scale (F32 [1])
  input_global_scale,  // the activation tensor scale from calibration (F32 [1])
  shape,               // [rows, cols] (I64 [2])
  tile_scale,          // one F32 scale per 2-D tile of a block-FP8 source, kept as the source stored it (never packed)
};
inline constexpr int tensor_role_count = static_cast<int>(tensor_role::tile_scale) + 1;

// One tensor a format stores per Linear [rows, cols]: the name suffix after "<linear>.", its dtype and shape.
struct stored_tensor {
  tensor_role role;
  std::string_view suffix;
  dtype type;
  std::array<index_t, 2> shape;  // rank 1 tensors use shape[1] == 0
  int rank;
  constexpr index_t numel() const { return rank == 1 ? shape[0] : shape[0] * shape[1]; }
  constexpr index_t bytes() const { return numel() * static_cast<index_t>(dtype_bits(type)) / 8; }
};

// compressed-tensors QuantizationArgs, the fields pq sets (the rest are written as their defaults).
enum class ct_dynamic : std::uint8_t { no, yes, local };
struct ct_args {
  int num_bits;
  std::string_view type;      // "int" | "float"
  std::string_view strategy;  // "tensor_group" | "group" | "channel" | "token" | "block"
  int group_size;             // 0 writes null
  bool symmetric;
  ct_dynamic dynamic;
  std::string_view scale_dtype;  // "" writes null
  std::string_view observer;     // "" writes null
  std::array<int, 2> block_structure{};  // [rows, cols] of strategy "block"; {0, 0} writes null
};
// A compressed-tensors scheme: the config group a format exports as.
struct ct_scheme {
  std::string_view format;  // e.g. "nvfp4-pack-quantized"
  ct_args weights;
  std::optional<ct_args> input_activations;
};

// The tiles of a block-scaled FP8 weight [m, n] as DeepSeek-V3 and the Qwen3 FP8 releases store it: E4M3 codes and
// one F32 scale per rows x cols tile, the last row and column of tiles partial (W = e4m3(code) * scale of its tile).
struct fp8_block_layout {
  index_t rows = 128, cols = 128;  // weight_block_size: [output, input] elements per tile
  constexpr index_t tile_rows(index_t m) const { return (m + rows - 1) / rows; }
  constexpr index_t tile_cols(index_t n) const { return (n + cols - 1) / cols; }
  constexpr index_t tile_of(index_t i, index_t j, index_t n) const { return (i / rows) * tile_cols(n) + j / cols; }
  std::vector<std::int64_t> scale_shape(index_t m, index_t n) const { return {tile_rows(m), tile_cols(n)}; }
  friend constexpr bool operator==(const fp8_block_layout&, const fp8_block_layout&) = default;
};
// How a source checkpoint stores one Linear: nothing for a dense weight (BF16, F16, F32), or block FP8 in these tiles.
using source_encoding = std::optional<fp8_block_layout>;
inline std::string describe(const source_encoding& e) {
  return e ? "block FP8 in " + std::to_string(e->rows) + "x" + std::to_string(e->cols) + " tiles" : "a dense weight";
}

// An element or scale codec: a code of `bits` bits (all 2^bits codes decodable), encode rounding to nearest
// even and saturating, decode exact. Minifloats, integers, BF16 and a user's codebook (examples/) all model it.
template <class C>
concept ElementCodec = requires(float x, std::uint32_t code) {
  { C::name } -> std::convertible_to<std::string_view>;
  { C::bits } -> std::convertible_to<int>;
  { C::code_count } -> std::convertible_to<std::uint32_t>;
  { C::encode(x) } -> std::same_as<std::uint32_t>;
  { C::decode(code) } -> std::same_as<float>;
} && (C::bits >= 1 && C::bits <= 16 && C::code_count == (std::uint32_t{1} << C::bits));

namespace detail {
// The stored tensors agree with the policy's flags: one code tensor, a block-scale tensor exactly when there is
// a scale codec, a global scale exactly when the format has a tensor scale, zero points exactly when it is
// asymmetric, tile scales exactly when it keeps a block-FP8 source, every role at most once. Checked on one
// shape the format accepts.
template <class F>
constexpr bool stored_tensors_agree() {
  const index_t cols = F::column_multiple * 8, rows = 64;
  int count[tensor_role_count] = {};
  for (const stored_tensor& t : F::stored_tensors(rows, cols)) {
    ++count[static_cast<int>(t.role)];
    if (t.rank < 1 || t.rank > 2 || t.bytes() <= 0) return false;
  }
  for (int c : count)
    if (c > 1) return false;
  constexpr bool has_scale_codec = requires { typename F::scale_codec; };
  return count[static_cast<int>(tensor_role::codes)] == 1 &&
         (count[static_cast<int>(tensor_role::block_scale)] == 1) == has_scale_codec &&
         (count[static_cast<int>(tensor_role::global_scale)] == 1) == F::has_tensor_scale &&
         (count[static_cast<int>(tensor_role::zero_point)] == 1) == F::asymmetric &&
         (count[static_cast<int>(tensor_role::tile_scale)] == 1) == requires { F::keeps_source; };
}
}  // namespace detail

// The Format concept: everything the library uses of a policy (RTN, sweep, GPTQ, pack/unpack, pricing, export),
// so that a type modelling it works everywhere, and one that lacks a member fails here, not deep inside pack().
// A policy is a stateless type; see formats/*.hpp for the registry's members.
template <class F>
concept Format = requires(float x, qparams p, std::uint32_t code, index_t n) {
  { F::name } -> std::convertible_to<std::string_view>;
  typename F::element;      // the element codec
  typename F::code_type;    // unsigned integer holding one element code
  { F::group_size } -> std::convertible_to<index_t>;  // 0: one group per row
  { F::column_multiple } -> std::convertible_to<index_t>;  // the format accepts K % column_multiple == 0
  { F::has_tensor_scale } -> std::convertible_to<bool>;   // a per-decision-unit scale (NVFP4's global scale)
  { F::asymmetric } -> std::convertible_to<bool>;         // groups carry an integer zero point
  { F::tensor_scale(x) } -> std::same_as<float>;         // from the decision unit's amax
  { F::group_params(x, x, x) } -> std::same_as<qparams>;  // from a group's min, max and the tensor scale
  { F::quantize(x, p) } -> std::same_as<std::uint32_t>;
  { F::dequantize(code, p) } -> std::same_as<float>;
  { F::stored_tensors(n, n) } -> std::ranges::range;
  { F::scheme } -> std::convertible_to<std::optional<ct_scheme>>;
} && ElementCodec<typename F::element> && std::unsigned_integral<typename F::code_type> &&
    (static_cast<int>(sizeof(typename F::code_type)) * 8 >= F::element::bits) &&
    (F::group_size >= 0 && F::column_multiple > 0 && (F::group_size == 0 || F::column_multiple % F::group_size == 0)) &&
    (!requires { typename F::scale_codec; } || ElementCodec<typename F::scale_codec>) &&
    (!F::asymmetric || requires { { F::element::offset } -> std::convertible_to<std::uint32_t>; }) &&
    std::same_as<std::ranges::range_value_t<decltype(F::stored_tensors(1, 1))>, stored_tensor> &&
    detail::stored_tensors_agree<F>();

// Columns per group of a [rows, cols] matrix, and groups per row.
template <Format F> constexpr index_t group_width(index_t cols) { return F::group_size ? F::group_size : cols; }
template <Format F> constexpr index_t groups_per_row(index_t cols) { return cols / group_width<F>(cols); }

// Exact bytes stored for one Linear: every tensor the format writes, nothing else.
template <Format F> constexpr index_t stored_bytes(index_t rows, index_t cols) {
  index_t total = 0;
  for (const auto& t : F::stored_tensors(rows, cols)) total += t.bytes();
  return total;
}
template <Format F> constexpr double bits_per_weight(index_t rows, index_t cols) {
  return 8.0 * static_cast<double>(stored_bytes<F>(rows, cols)) / static_cast<double>(rows * cols);
}

template <Format F> constexpr bool accepts(index_t rows, index_t cols) {
  return rows > 0 && cols > 0 && cols % F::column_multiple == 0;
}

// A passthrough format ships the source's own tensors where the source stores a Linear in the encoding the
// format stores (`kept_encoding`): nothing is rounded or packed, its error is zero. Declared by the format
// (`static constexpr bool passthrough = true`). BF16 keeps a dense weight (and goes to the export's ignore list;
// a block-FP8 weight it rounds to BF16, like any format); FP8_SOURCE keeps a block-FP8 weight in its tiles
// (`static constexpr fp8_block_layout keeps_source`) and is available for no other Linear.
template <Format F> inline constexpr bool is_passthrough = requires { requires F::passthrough; };
template <Format F> inline constexpr bool keeps_fp8_source = is_passthrough<F> && requires { F::keeps_source; };
template <Format F> inline constexpr source_encoding kept_encoding = [] {
  if constexpr (keeps_fp8_source<F>) return source_encoding(F::keeps_source);
  else return source_encoding();
}();

// pq rounds a Linear into F (where F does not keep it): every format but one whose stored tensors only a source
// holds (FP8_SOURCE's tile scales: the group building blocks round one group, not a 2-D tile).
template <Format F> inline constexpr bool is_roundable = !keeps_fp8_source<F>;

// Exportable: a compressed-tensors scheme vLLM loads, or passthrough.
template <Format F> inline constexpr bool is_exportable = F::scheme.has_value() || is_passthrough<F>;

// The scheme also quantizes the Linear's inputs (NVFP4 W4A4): its input_global_scale comes from measured
// activation amax, so the format needs calibration data.
template <Format F>
inline constexpr bool needs_activation_stats = F::has_tensor_scale && F::scheme.has_value() &&
                                               F::scheme->input_activations.has_value();

// Shapes a format does not accept are an error naming the format and the shape.
struct unsupported_shape : pq::error {
  using pq::error::error;
};
template <Format F> void require_accepts(index_t rows, index_t cols, std::string_view what = "matrix") {
  if (!accepts<F>(rows, cols))
    throw unsupported_shape(std::string(F::name) + " does not accept the " + std::to_string(rows) + "x" +
                            std::to_string(cols) + " " + std::string(what) + ": it needs a positive shape with " +
                            "columns a multiple of " + std::to_string(F::column_multiple));
}

PQ_HD constexpr float max_abs(float lo, float hi) {
  const float a = lo < 0.0f ? -lo : lo;
  const float b = hi < 0.0f ? -hi : hi;
  return a > b ? a : b;
}

// Group range: smallest and largest value, the values std::minmax_element finds (where a group holds both
// -0 and +0 the sign of a zero end may differ, and no scale rule tells -0 from +0).
struct value_range {
  float lo, hi;
};
PQ_HD constexpr value_range merge(value_range a, value_range b) {  // a's elements precede b's
  return {b.lo < a.lo ? b.lo : a.lo, b.hi < a.hi ? a.hi : b.hi};
}
// Floats ordered as signed integers (-0 just below +0): integer min/max need no branch and vectorise,
// where float comparisons that must respect signed zeros and NaN become unpredictable jumps.
PQ_HD constexpr std::int32_t order_key(float x) {
  const std::uint32_t u = float_bits(x);
  return static_cast<std::int32_t>(u ^ ((0u - (u >> 31)) & 0x7fffffffu));
}
PQ_HD constexpr float from_order_key(std::int32_t k) {
  const std::uint32_t u = static_cast<std::uint32_t>(k);
  return bits_float(u ^ ((0u - (u >> 31)) & 0x7fffffffu));
}
PQ_HD constexpr value_range range_of(const float* v, index_t n) {
  constexpr int L = 8;  // independent lanes (a vector's worth), folded at the end: no serial min/max chain
  std::int32_t lo[L], hi[L];
  for (int k = 0; k < L; ++k) lo[k] = hi[k] = order_key(v[0]);
  const index_t blocks = n / L;
  for (index_t b = 0; b < blocks; ++b)
    for (int k = 0; k < L; ++k) {
      const std::int32_t x = order_key(v[b * L + k]);
      lo[k] = x < lo[k] ? x : lo[k];
      hi[k] = x > hi[k] ? x : hi[k];
    }
  const index_t rem = n - blocks * L;
  for (int k = 0; k < L; ++k)
    if (k < rem) {
      const std::int32_t x = order_key(v[blocks * L + k]);
      lo[k] = x < lo[k] ? x : lo[k];
      hi[k] = x > hi[k] ? x : hi[k];
    }
  for (int k = 1; k < L; ++k) {
    lo[0] = lo[k] < lo[0] ? lo[k] : lo[0];
    hi[0] = hi[k] > hi[0] ? hi[k] : hi[0];
  }
  return {from_order_key(lo[0]), from_order_key(hi[0])};
}

}  // namespace pq
