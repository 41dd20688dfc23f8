// The codec and format functions run in a kernel and agree bit for bit with the host over every code
// and over random inputs. (main.cu skips the suite where there is no GPU.)
#include <doctest/doctest.h>

#include <cstring>
#include <random>
#include <tuple>
#include <vector>

#include <pq/core/bf16.hpp>
#include <pq/core/minifloat.hpp>
#include <pq/cuda/check.cuh>
#include <pq/cuda/rtn.cuh>
#include <pq/formats/bundle.hpp>
#include <pq/quant/rtn.hpp>

using namespace pq;

template <class C>
__global__ void codec_kernel(const float* x, std::uint32_t* enc, float* dec, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  enc[i] = C::encode(x[i]);
  dec[i] = C::decode(static_cast<std::uint32_t>(i) % C::code_count);
}

TEST_CASE_TEMPLATE("codec on the device equals the host", C, e2m1, e2m3, e3m2, e4m3, e5m2, ue4m3, ue8m0, bf16) {
  const int n = 1 << 16;
  std::vector<float> x(n);
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1.5f, 1.5f);
  for (int i = 0; i < n; ++i) {
    // every code's value, the midpoints, then random values across the range
    const std::uint32_t c = static_cast<std::uint32_t>(i) % C::code_count;
    x[i] = i < static_cast<int>(C::code_count) ? C::decode(c) : u(rng) * 448.0f;
  }
  float *dx, *ddec;
  std::uint32_t* denc;
  cuda::check(cudaMalloc(&dx, n * 4), "malloc");
  cuda::check(cudaMalloc(&ddec, n * 4), "malloc");
  cuda::check(cudaMalloc(&denc, n * 4), "malloc");
  cuda::check(cudaMemcpy(dx, x.data(), n * 4, cudaMemcpyHostToDevice), "copy");
  codec_kernel<C><<<n / 256, 256>>>(dx, denc, ddec, n);
  cuda::check(cudaDeviceSynchronize(), "codec_kernel");
  std::vector<std::uint32_t> enc(n);
  std::vector<float> dec(n);
  cuda::check(cudaMemcpy(enc.data(), denc, n * 4, cudaMemcpyDeviceToHost), "copy");
  cuda::check(cudaMemcpy(dec.data(), ddec, n * 4, cudaMemcpyDeviceToHost), "copy");
  for (int i = 0; i < n; ++i) {
    CHECK(enc[i] == C::encode(x[i]));
    const float h = C::decode(static_cast<std::uint32_t>(i) % C::code_count);
    CHECK(std::memcmp(&dec[i], &h, 4) == 0);
  }
  cudaFree(dx);
  cudaFree(ddec);
  cudaFree(denc);
}

namespace {
template <class List> struct as_tuple;
template <class... Ts> struct as_tuple<type_list<Ts...>> { using type = std::tuple<Ts...>; };
}  // namespace

TEST_CASE_TEMPLATE_DEFINE("RTN on the device equals the host", F, device_rtn) {
  const index_t rows = 64, cols = 512;
  std::vector<float> w(rows * cols);
  std::mt19937 rng(9);
  std::normal_distribution<float> nd(0.0f, 0.02f);
  for (auto& v : w) v = nd(rng);
  const float g = F::tensor_scale(weight_amax(w));
  const auto host = quantize_rtn<F>(w, rows, cols, g);
  const auto dev = cuda::quantize_rtn<F>(w, rows, cols, g);
  CHECK(dev.codes == host.codes);
  CHECK(dev.params == host.params);
}
TEST_CASE_TEMPLATE_APPLY(device_rtn, as_tuple<all_formats>::type);
