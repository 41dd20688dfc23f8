// The codecs in a kernel agree bit for bit with the host (and so with the branching definition) over the
// dense structured sample of every input class (tests/core/codec_sample.hpp), including the hardware
// converts where the target has them (E4M3/E5M2 from sm_89, E2M1 in the sm_100 family). main.cu skips the
// suite where there is no GPU.
#include <doctest/doctest.h>

#include <cstring>
#include <vector>

#include <pq/core/bf16.hpp>
#include <pq/core/integer.hpp>
#include <pq/core/minifloat.hpp>
#include <pq/cuda/memory.cuh>

#include "../core/codec_sample.hpp"
#include "../core/reference_codecs.hpp"

using namespace pq;
namespace pqc = pq::cuda;  // "cuda" alone is ambiguous with libcu++'s ::cuda

template <class C>
__global__ void codec_kernel(const float* x, std::uint32_t* enc, float* dec, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  enc[i] = C::encode(x[i]);
  dec[i] = C::decode(static_cast<std::uint32_t>(i) % C::code_count);
}

TEST_CASE_TEMPLATE("codec on the device equals the host over every input class", C, e2m1, e2m3, e3m2, e4m3, e5m2,
                   ue4m3, ue8m0, bf16, pq::int4, pq::int8) {
  const auto x = test::codec_sample<C>(65521);  // a coarser stride than the host suite: the classes are the point
  const int n = static_cast<int>(x.size());
  pqc::stream s;
  pqc::device_buffer<float> dx(std::span<const float>(x), s), ddec(x.size(), s);
  pqc::device_buffer<std::uint32_t> denc(x.size(), s);
  codec_kernel<C><<<(n + 255) / 256, 256, 0, s>>>(dx.data(), denc.data(), ddec.data(), n);
  pqc::check(cudaGetLastError(), "codec_kernel launch");
  const auto enc = denc.download();
  const auto dec = ddec.download();
  std::size_t bad_enc = 0, bad_dec = 0;
  for (int i = 0; i < n; ++i) {
    if (enc[static_cast<std::size_t>(i)] != C::encode(x[static_cast<std::size_t>(i)]) && ++bad_enc < 8)
      CHECK(enc[static_cast<std::size_t>(i)] == C::encode(x[static_cast<std::size_t>(i)]));
    const float h = C::decode(static_cast<std::uint32_t>(i) % C::code_count);
    bad_dec += std::memcmp(&dec[static_cast<std::size_t>(i)], &h, 4) != 0;
  }
  CHECK(bad_enc == 0);
  CHECK(bad_dec == 0);
}
