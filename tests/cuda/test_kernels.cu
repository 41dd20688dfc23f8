// The kernels of pq/cuda/kernels.cuh against the host reference path, byte for byte: for every packable
// format and input dtype, a batched unit of Linears of different heights (amax over the unit, the
// tensor scale, RTN + pack, dequantize, RTN + sweep), on weights with every awkward class and on the real
// weights of ../shared/models; a non-finite weight is refused. main.cu skips the suite without a GPU.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <tuple>
#include <vector>

#include <pq/cuda/kernels.cuh>
#include <pq/formats/bundle.hpp>
#include <pq/quant/rtn.hpp>
#include <pq/quant/scale_sweep.hpp>

#include "../quant/mini_safetensors.hpp"
#include "../quant/packed_testing.hpp"

using namespace pq;
namespace pqc = pq::cuda;  // "cuda" alone is ambiguous with libcu++'s ::cuda

namespace {
template <class List> struct as_tuple;
template <class... Ts> struct as_tuple<type_list<Ts...>> { using type = std::tuple<Ts...>; };

// One unit of Linears (host weights, float copies for the reference), run through every kernel, each
// output compared with the host reference of the same Linear.
template <class F, class In>
void check_unit(const std::vector<std::vector<In>>& ws, const std::vector<index_t>& rows, index_t cols, unsigned seed) {
  pqc::stream s;
  const std::size_t n = ws.size();
  std::vector<std::vector<float>> wf;
  std::vector<float> all;
  for (const auto& w : ws) {
    wf.push_back(test::widen(w));
    all.insert(all.end(), wf.back().begin(), wf.back().end());
  }
  const float ts = F::tensor_scale(weight_amax(all));
  std::vector<double> d(static_cast<std::size_t>(cols));
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(0.1, 2.0);
  for (auto& x : d) x = u(rng);

  std::vector<pqc::device_buffer<In>> dw;
  std::vector<pqc::device_packed<F>> q, sw;
  pqc::device_buffer<double> dd(std::span<const double>(d), s);
  std::vector<pqc::linear_ref<In>> qrefs, srefs;
  for (std::size_t i = 0; i < n; ++i) {
    dw.emplace_back(std::span<const In>(ws[i]), s);
    q.emplace_back(rows[i], cols, s);
    sw.emplace_back(rows[i], cols, s);
  }
  for (std::size_t i = 0; i < n; ++i) {
    q[i].codes.fill_bytes(0xA5);  // poison: every byte must be written
    q[i].scales.fill_bytes(0xA5);
    qrefs.push_back(q[i].quantize_ref(dw[i].data(), dd.data()));
    srefs.push_back(sw[i].quantize_ref(dw[i].data(), dd.data()));
  }
  pqc::unit_plan<F, In> plan(qrefs, s), splan(srefs, s);
  plan.amax(s);
  plan.quantize(s);
  splan.amax(s);
  splan.sweep({}, s);
  CHECK(plan.unit_amax(s) == weight_amax(all));

  for (std::size_t i = 0; i < n; ++i) {
    CAPTURE(i);
    const auto ref_q = quantize_rtn<F>(wf[i], rows[i], cols, ts);
    const auto got = q[i].download();
    CHECK(q[i].tensor_scale() == ref_q.tensor_scale);
    test::check_same(as_packed_tensors<F>(got, q[i].tensor_scale(), 1.0f), pack(ref_q, 1.0f));

    auto ref_s = ref_q;
    scale_sweep<F>(wf[i], d, ref_s, {}, 1);
    test::check_same(as_packed_tensors<F>(sw[i].download(), sw[i].tensor_scale(), 1.0f), pack(ref_s, 1.0f));

    // dequantize the device bytes to float and to bf16
    const auto ref_deq = dequantize(unpack<F>(pack(ref_q, 1.0f), rows[i], cols));
    pqc::device_buffer<float> y(ref_deq.size(), s);
    pqc::device_buffer<bf16_bits> y16(ref_deq.size(), s);
    const pqc::dequant_ref<float> dr[] = {q[i].dequant_ref_to(y.data())};
    const pqc::dequant_ref<bf16_bits> dr16[] = {q[i].dequant_ref_to(y16.data())};
    pqc::dequantize_plan<F, float> dp(dr, s);
    pqc::dequantize_plan<F, bf16_bits> dp16(dr16, s);
    dp.run(s);
    dp16.run(s);
    const auto yh = y.download();
    const auto yh16 = y16.download();
    CHECK(std::memcmp(yh.data(), ref_deq.data(), yh.size() * 4) == 0);
    std::size_t bad = 0;
    for (std::size_t k = 0; k < yh16.size(); ++k) bad += yh16[k].bits != bf16::encode(ref_deq[k]);
    CHECK(bad == 0);
  }
}

template <class F, class In>
void check_random(unsigned seed) {
  for (index_t cols : test::test_cols<F>()) {
    CAPTURE(cols);
    const std::vector<index_t> rows{5, 16, 33};
    std::vector<std::vector<In>> ws;
    for (std::size_t i = 0; i < rows.size(); ++i)
      ws.push_back(test::narrow<In>(test::awkward_weights(rows[i], cols, seed + static_cast<unsigned>(i))));
    check_unit<F, In>(ws, rows, cols, seed);
  }
}
}  // namespace

TEST_CASE_TEMPLATE_DEFINE("kernels equal the host path on awkward random units", F, device_random) {
  check_random<F, float>(11);
  check_random<F, bf16_bits>(12);
  check_random<F, fp16_bits>(13);
}
TEST_CASE_TEMPLATE_APPLY(device_random, as_tuple<packable_formats>::type);

TEST_CASE_TEMPLATE_DEFINE("kernels equal the host path on the real weights of the test models", F, device_real) {
  // PQ_MODELS_DIR in the environment overrides the build's path (the device machine gets a copy elsewhere).
  const char* env = std::getenv("PQ_MODELS_DIR");
  const std::string dir = env && *env ? env : PQ_MODELS_DIR;
  if (!std::filesystem::exists(dir + "/tiny-qwen2moe-code")) {
    MESSAGE("skipped: " << dir << " is absent");
    return;
  }
  // tiny-llama-code layer 0 gate/up (a fused unit) and all 8 experts' gate_proj of tiny-qwen2moe-code layer 1
  // (an MoE unit), bf16 as stored.
  struct unit { std::string file; std::vector<std::string> names; };
  const unit units[] = {
      {dir + "/tiny-llama-code/model-00001-of-00002.safetensors",
       {"model.layers.0.mlp.gate_proj.weight", "model.layers.0.mlp.up_proj.weight"}},
      {dir + "/tiny-qwen2moe-code/model-00001-of-00002.safetensors", {}},
  };
  for (const unit& un : units) {
    const test::mini_safetensors st(un.file);
    std::vector<std::string> names = un.names;
    if (names.empty())
      for (int e = 0; e < 8; ++e) names.push_back("model.layers.1.mlp.experts." + std::to_string(e) + ".gate_proj.weight");
    std::vector<std::vector<bf16_bits>> ws;
    std::vector<index_t> rows;
    index_t cols = 0;
    bool present = true;
    for (const auto& nm : names) {
      if (!st.has(nm)) {
        present = false;
        break;
      }
      rows.push_back(st.shape(nm)[0]);
      cols = st.shape(nm)[1];
      ws.push_back(test::narrow<bf16_bits>(st.floats(nm)));
    }
    if (!present) {
      MESSAGE("skipped: a tensor of " << un.file << " is absent");
      continue;
    }
    check_unit<F, bf16_bits>(ws, rows, cols, 21);
  }
}
TEST_CASE_TEMPLATE_APPLY(device_real, as_tuple<bundle<NVFP4, MXFP4, MXFP8_E4M3, INT4_G128, INT4_G128_ASYM, FP8_CHANNEL,
                                                      INT8_CHANNEL>>::type);

TEST_CASE("a non-finite weight is refused, naming the unit") {
  pqc::stream s;
  std::vector<float> w(64 * 32, 0.5f);
  w[777] = NAN;
  pqc::device_buffer<float> dw(std::span<const float>(w), s);
  pqc::device_packed<NVFP4> out(64, 32, s);
  const pqc::linear_ref<float> refs[] = {out.quantize_ref(dw.data())};
  pqc::unit_plan<NVFP4, float> plan(refs, s);
  plan.amax(s);
  CHECK_THROWS_WITH_AS(plan.unit_amax(s, "layers.3.self_attn.qkv"), "non-finite weight in layers.3.self_attn.qkv",
                       quant_error);
}

TEST_CASE("device buffers release their memory when a launch throws") {
  pqc::stream s;
  std::size_t free0 = 0, total = 0;
  pqc::check(cudaMemGetInfo(&free0, &total), "cudaMemGetInfo");
  for (int k = 0; k < 4; ++k) {
    try {
      pqc::device_buffer<float> big(std::size_t{1} << 28, s);  // 1 GiB
      const std::vector<pqc::linear_ref<float>> none;
      pqc::unit_plan<NVFP4, float> plan(none, s);  // throws: an empty unit
    } catch (const pqc::cuda_error&) {
    }
  }
  s.synchronize();
  pqc::check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");  // the earlier cases' frees, on their streams
  cudaMemPool_t pool;
  int dev = 0;
  pqc::check(cudaGetDevice(&dev), "cudaGetDevice");
  pqc::check(cudaDeviceGetDefaultMemPool(&pool, dev), "cudaDeviceGetDefaultMemPool");
  std::uint64_t used = 1;
  pqc::check(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrUsedMemCurrent, &used), "cudaMemPoolGetAttribute");
  CHECK(used == 0);
}
