// A downstream project: picks a compile-time bundle of formats and prices and rounds one matrix.
#include <cstdio>
#include <vector>

#include <pq/formats/bundle.hpp>
#include <pq/quant/rtn.hpp>

int main() {
  using my_formats = pq::bundle<pq::NVFP4, pq::MXFP8_E4M3, pq::BF16>;
  std::vector<float> w(64 * 64, 0.01f);
  int ok = 0;
  my_formats::for_each([&](auto t) {
    using F = typename decltype(t)::type;
    const auto q = pq::quantize_rtn<F>(w, 64, 64);
    ok += pq::dequantize(q).size() == w.size();
    std::printf("%s %.4f bits/w\n", F::name.data(), pq::bits_per_weight<F>(64, 64));
  });
  return ok == 3 ? 0 : 1;
}
