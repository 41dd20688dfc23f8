// bench/cuda_rows.cpp: `pq bench --device cuda` without the driver: the CUDA rows (pq::bench::run_cuda,
// defined by the driver's one CUDA translation unit tools/pq/bench_cuda.cu, linked in), printed as the
// driver prints them and written as JSON. It needs only pq's headers, nlohmann/json and nvcc, so
// bench/device-check.sh can build it on a device machine that lacks the driver's libraries:
//   nvcc -std=c++20 --expt-relaxed-constexpr -Iinclude bench/cuda_rows.cpp tools/pq/bench_cuda.cu
//   cuda_rows [--formats A,B] [--shape RxC] [--dtype bf16|fp16|fp32] [--repeats N] [--json FILE]
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include <pq/bench/bench.hpp>

int main(int argc, char** argv) {
  try {
    pq::bench::options o;
    std::string json;
    for (int i = 1; i + 1 < argc; i += 2) {
      const std::string k = argv[i], v = argv[i + 1];
      if (k == "--formats") {
        o.formats = pq::bench::comma_list(v);
      } else if (k == "--shape") {
        const auto x = v.find('x');
        o.rows = std::stoll(v.substr(0, x));
        o.cols = std::stoll(v.substr(x + 1));
      } else if (k == "--dtype") {
        o.dtype = pq::bench::parse_dtype(v);
      } else if (k == "--repeats") {
        o.repeats = std::stoi(v);
      } else if (k == "--json") {
        json = v;
      } else {
        std::fprintf(stderr, "cuda_rows: unknown option %s\n", k.c_str());
        return 2;
      }
    }
    const auto rows = pq::bench::run_cuda(o);
    std::printf("%s", pq::bench::table(rows).c_str());
    if (!json.empty()) std::ofstream(json) << pq::bench::to_json(rows).dump(2) << "\n";
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cuda_rows: error: %s\n", e.what());
    return 1;
  }
}
