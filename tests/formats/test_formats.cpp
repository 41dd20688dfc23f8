// Format policies: the spec's scale rules and layouts, one typed suite over the whole registry.
#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include <pq/formats/bundle.hpp>
#include <pq/formats/quantized.hpp>
#include <pq/quant/rtn.hpp>

using namespace pq;

namespace {
template <class List> struct as_tuple;
template <class... Ts> struct as_tuple<type_list<Ts...>> { using type = std::tuple<Ts...>; };

// Heavy-tailed rows like trained weights: Gaussian with a few large outliers, and one all-zero row.
std::vector<float> test_matrix(index_t rows, index_t cols, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 0.02f);
  std::vector<float> w(static_cast<std::size_t>(rows * cols));
  for (auto& x : w) x = nd(rng);
  for (int i = 0; i < 20; ++i) w[rng() % w.size()] *= 15.0f;
  for (index_t c = 0; c < cols; ++c) w[2 * cols + c] = 0.0f;
  return w;
}

// Largest gap between neighbouring magnitudes of the element grid (its top step).
template <class F> float top_gap() {
  using E = typename F::element;
  if constexpr (requires { E::max_code; }) return E::decode(E::max_code) - E::decode(E::max_code - 1);
  else return 1.0f;
}
}  // namespace

TEST_CASE_TEMPLATE_DEFINE("every format", F, every_format) {
  const index_t rows = 48, cols = 256;
  const auto w = test_matrix(rows, cols, 42);
  const auto q = quantize_rtn<F>(w, rows, cols);
  const auto d = dequantize(q);

  SUBCASE("pack writes exactly the stored tensor list, unpack restores the same codes and values") {
    const auto tensors = pack(q, 1.0f);
    const auto spec = F::stored_tensors(rows, cols);
    REQUIRE(tensors.size() == spec.size());
    index_t total = 0;
    for (std::size_t i = 0; i < spec.size(); ++i) {
      CHECK(tensors[i].suffix == spec[i].suffix);
      CHECK(tensors[i].type == spec[i].type);
      CHECK(static_cast<index_t>(tensors[i].bytes.size()) == spec[i].bytes());
      total += static_cast<index_t>(tensors[i].bytes.size());
    }
    CHECK(total == stored_bytes<F>(rows, cols));
    const auto back = unpack<F>(tensors, rows, cols);
    CHECK(back.codes == q.codes);
    CHECK(dequantize(back) == d);
  }
  SUBCASE("dequantized weights are close: within a half top step of each group's scale") {
    for (index_t r = 0; r < rows; ++r)
      for (index_t c = 0; c < cols; ++c) {
        const qparams& p = q.group(r, c);
        const float bound = std::is_same_v<F, BF16> ? std::fabs(w[r * cols + c]) * 0x1p-8f
                                                    : 0.5f * top_gap<F>() * p.scale * 1.0001f;
        // MX rules may saturate the top of a group by design (checked separately below).
        if constexpr (!std::is_base_of_v<detail::mx_policy<typename F::element>, F>)
          CHECK(std::fabs(w[r * cols + c] - d[r * cols + c]) <= bound);
      }
  }
  SUBCASE("a zero row quantizes to zeros with a positive stored scale") {
    for (index_t c = 0; c < cols; ++c) CHECK(d[2 * cols + c] == 0.0f);
    CHECK(q.group(2, 0).scale > 0.0f);
  }
  SUBCASE("shape checks name the format and the shape") {
    if (F::column_multiple > 1) {
      const std::vector<float> odd(static_cast<std::size_t>(10 * (F::column_multiple + 1)));
      const std::string name(F::name);
      CHECK_THROWS_WITH_AS(quantize_rtn<F>(odd, 10, F::column_multiple + 1), doctest::Contains(name.c_str()),
                           unsupported_shape);
    }
    CHECK_FALSE(accepts<F>(0, 64));
  }
  SUBCASE("the runtime visitor finds the type by its name") {
    CHECK(visit_format(F::name, [](auto f) { return std::string(decltype(f)::name); }) == F::name);
  }
}
TEST_CASE_TEMPLATE_APPLY(every_format, as_tuple<roundable_formats>::type);

TEST_CASE("bits per weight follow from the stored tensors (DESIGN table)") {
  const index_t n = 4096, k = 4096, nk = n * k;
  CHECK(bits_per_weight<NVFP4>(n, k) == doctest::Approx(4.5 + 64.0 / nk).epsilon(1e-12));  // 2 fp32 scales
  CHECK(bits_per_weight<NVFP4A16>(n, k) == doctest::Approx(4.5 + 32.0 / nk).epsilon(1e-12));
  CHECK(bits_per_weight<MXFP4>(n, k) == 4.25);
  CHECK(bits_per_weight<MXFP6_E3M2>(n, k) == 6.25);
  CHECK(bits_per_weight<MXFP8_E4M3>(n, k) == 8.25);
  CHECK(bits_per_weight<FP8_CHANNEL>(n, k) == doctest::Approx(8.0 + 16.0 / k).epsilon(1e-12));
  CHECK(bits_per_weight<INT4_G128>(n, k) == doctest::Approx(4.125 + 128.0 / nk).epsilon(1e-12));  // + weight_shape
  CHECK(bits_per_weight<INT4_G128_ASYM>(n, k) == doctest::Approx(4.0 + 20.0 / 128 + 128.0 / nk).epsilon(1e-12));
  CHECK(bits_per_weight<INT8_CHANNEL>(n, k) == doctest::Approx(8.0 + 16.0 / k + 128.0 / nk).epsilon(1e-12));
  CHECK(bits_per_weight<BF16>(n, k) == 16.0);
}

TEST_CASE("NVFP4 follows the reference recipe: g = 2688/amax, s_b = E4M3(g·amax_b/6), y = x/(s_b/g)") {
  const index_t rows = 4, cols = 64;
  auto w = test_matrix(rows, cols, 3);
  const float amax = weight_amax(w);
  const float g = nvfp4_global_scale(amax);
  CHECK(g == 2688.0f / amax);
  const auto q = quantize_rtn<NVFP4>(w, rows, cols, g);
  for (index_t r = 0; r < rows; ++r)
    for (index_t b = 0; b < cols / 16; ++b) {
      float amax_b = 0;
      for (index_t c = b * 16; c < b * 16 + 16; ++c) amax_b = std::max(amax_b, std::fabs(w[r * cols + c]));
      // Independent nearest-E4M3 search over the positive codes (ties to even code).
      const double target = double(g) * (amax_b / 6.0f);
      std::uint32_t best = 0;
      for (std::uint32_t c = 1; c <= 0x7E; ++c) {
        const double e_new = std::fabs(e4m3::decode(c) - target), e_old = std::fabs(e4m3::decode(best) - target);
        if (e_new < e_old || (e_new == e_old && !(c & 1))) best = c;
      }
      if (best == 0) best = 0x20;  // zero scale becomes 0.125
      const qparams& p = q.params[r * (cols / 16) + b];
      CHECK(p.scale_code == best);
      CHECK(p.scale == e4m3::decode(best) / g);
      CHECK(p.scale_code <= 0x7Eu);  // positive, at most 448: never saturated since amax_b <= amax
    }
  // A zero block stores 0.125.
  CHECK(nvfp4_block_params(0.0f, g).scale_code == 0x20u);
  CHECK(nvfp4_global_scale(0.0f) == 1.0f);
}

TEST_CASE("MX shared exponents: power of two with the bump at f >= 0.75, offset floor(log2 max)") {
  CHECK(mx_group_params<e2m1>(1.0f).scale_code == 125u);          // 2^0 / 2^2
  CHECK(mx_group_params<e2m1>(6.0f).scale_code == 127u);          // 1.5·2^2 -> 2^2 -> scale 1
  CHECK(mx_group_params<e2m1>(7.0f).scale_code == 128u);          // 1.75·2^2 bumps to 2^3 -> scale 2
  CHECK(mx_group_params<e2m1>(0.0f).scale_code == 0u);
  CHECK(mx_group_params<e4m3>(1.0f).scale == std::ldexp(1.0f, -8));  // p/256
  CHECK(mx_group_params<e4m3>(448.0f).scale_code == 128u);
  CHECK(mx_group_params<e3m2>(1.0f).scale_code == 123u);           // floor(log2 28) = 4
  CHECK(mx_group_params<e2m3>(1.0f).scale_code == 125u);           // floor(log2 7.5) = 2
  // MXFP4 clips exactly where the rule says: amax = 1.7·2^E maps to 6.8, saturating at 6.
  const qparams p = mx_group_params<e2m1>(1.7f);
  CHECK(MXFP4::dequantize(MXFP4::quantize(1.7f, p), p) == 6.0f * p.scale);
  const qparams p2 = mx_group_params<e2m1>(1.75f);
  CHECK(p2.scale == 0.5f);  // bumped: y = 3.5 lies inside the grid and rounds (to even) to 4, no saturation
  CHECK(MXFP4::dequantize(MXFP4::quantize(1.75f, p2), p2) == 2.0f);
  // MXFP8 never clips: y = (1+f)·2^8 < 448 whenever f < 0.75.
  for (float a : {1.0f, 1.5f, 1.7499f, 1.75f, 1.99f}) {
    const qparams q8 = mx_group_params<e4m3>(a);
    CHECK(a / q8.scale <= 448.0f);
  }
}

TEST_CASE("INT: symmetric amax/7.5 (zero -> 2^-7), asymmetric range/15 with RNE zero point") {
  const qparams s = int_symmetric_params<int4>(1.5f);
  CHECK(s.scale == 0.2001953125f);  // 0.2 rounded up to bf16 (RNE would give 0.19995117)
  CHECK(int_symmetric_params<int4>(0.75f).scale == 0.1000976563f);
  CHECK(int_symmetric_params<int4>(0.0f).scale == 0x1p-7f);
  CHECK(int_symmetric_params<int8>(127.5f).scale == 1.0f);
  // Group with range [0, 1.5]: scale = bf16(1.5/15) = bf16(0.1), zp = RNE(-8 - 0/scale) = -8.
  const qparams a = int_asymmetric_params<int4>(0.0f, 1.5f);
  CHECK(a.scale == 0.1000976563f);  // 0.1 rounded up to bf16
  CHECK(a.zero == -8);
  CHECK(INT4_G128_ASYM::quantize(0.0f, a) == 0u);  // u = q + 8 with q = -8
  // Range [-1, 3]: scale bf16(4/15), zp = RNE(-8 + 1/scale) = RNE(-4.25) = -4.
  const qparams b = int_asymmetric_params<int4>(-1.0f, 3.0f);
  CHECK(b.zero == static_cast<int>(std::nearbyint(-8.0f + 1.0f / b.scale)));
  CHECK(INT4_G128_ASYM::dequantize(INT4_G128_ASYM::quantize(3.0f, b), b) == doctest::Approx(3.0f).epsilon(0.05));
}

TEST_CASE("FP8 channel: bf16(amax/448), a zero row gets 2^-7") {
  CHECK(fp8_channel_params(448.0f).scale == 1.0f);
  CHECK(fp8_channel_params(0.0f).scale == 0x1p-7f);
  const qparams p = fp8_channel_params(1.0f);
  CHECK(p.scale == bf16::round(1.0f / 448.0f));
}

TEST_CASE("compressed-tensors schemes as the spec lists them") {
  CHECK(NVFP4::scheme->format == "nvfp4-pack-quantized");
  CHECK(NVFP4::scheme->input_activations.has_value());
  CHECK_FALSE(NVFP4A16::scheme->input_activations.has_value());
  CHECK(MXFP4::scheme->weights.scale_dtype == "torch.uint8");
  CHECK(MXFP8_E4M3::scheme->format == "mxfp8-quantized");
  CHECK(INT4_G128::scheme->weights.group_size == 128);
  CHECK(INT8_CHANNEL::scheme->weights.strategy == "channel");
  CHECK_FALSE(MXFP6_E3M2::scheme.has_value());
  CHECK_FALSE(BF16::scheme.has_value());
}

TEST_CASE("unknown names list the valid ones") {
  CHECK_THROWS_WITH_AS(visit_format("NVFP5", [](auto) {}), doctest::Contains("NVFP4, NVFP4A16, MXFP4"), unknown_format);
  using small = bundle<NVFP4, BF16>;
  CHECK_THROWS_AS(visit_format<small>("MXFP4", [](auto) {}), unknown_format);
  CHECK(format_names<small>().size() == 2);
}

// The concept rejects a policy that lacks what pack/unpack use, or whose stored tensors contradict its flags:
// a user's format fails at the concept, not inside the library. Each broken policy differs from a valid one
// (the shipped MXFP4) in one respect.
namespace broken {
struct no_asymmetric_flag {
  static constexpr std::string_view name = "X";
  using element = e2m1;
  using scale_codec = ue8m0;
  using code_type = std::uint8_t;
  static constexpr index_t group_size = 32, column_multiple = 32;
  static constexpr bool has_tensor_scale = false;
  static constexpr float tensor_scale(float) { return 1.0f; }
  static constexpr qparams group_params(float lo, float hi, float g) { return MXFP4::group_params(lo, hi, g); }
  static constexpr std::uint32_t quantize(float x, qparams p) { return MXFP4::quantize(x, p); }
  static constexpr float dequantize(std::uint32_t c, qparams p) { return MXFP4::dequantize(c, p); }
  static constexpr auto stored_tensors(index_t r, index_t c) { return MXFP4::stored_tensors(r, c); }
  static constexpr auto scheme = MXFP4::scheme;
};
struct with_flag : no_asymmetric_flag {
  static constexpr bool asymmetric = false;
};
struct claims_tensor_scale : with_flag {  // but stores no global scale
  static constexpr bool has_tensor_scale = true;
};
struct claims_zero_points : with_flag {  // asymmetric, but E2M1 has no integer offset and nothing stores zeros
  static constexpr bool asymmetric = true;
};
struct codes_too_narrow : with_flag {  // 16-bit codes in an 8-bit code type would be cut
  using element = bf16;
};
struct ragged_groups : with_flag {  // groups of 32 but accepts multiples of 16
  static constexpr index_t column_multiple = 16;
};
}  // namespace broken

TEST_CASE("the Format concept checks what the library relies on") {
  static_assert(Format<broken::with_flag>);
  static_assert(!Format<broken::no_asymmetric_flag>);
  static_assert(!Format<broken::claims_tensor_scale>);
  static_assert(!Format<broken::claims_zero_points>);
  static_assert(!Format<broken::codes_too_narrow>);
  static_assert(!Format<broken::ragged_groups>);
  static_assert(ElementCodec<e2m1> && ElementCodec<int4> && ElementCodec<bf16> && !ElementCodec<float>);
  CHECK(Format<broken::with_flag>);
}
