// bench/gptq_rows.cpp: `pq bench --algo gptq` without the driver: the GPTQ, statistics and cost rows of
// pq/bench/gptq.cuh (pq::bench::run_gptq_cuda, defined by the driver's one CUDA translation unit
// tools/pq/bench_cuda.cu, linked in), printed and written as JSON. Needs pq's headers, Eigen,
// nlohmann/json, nvcc and cuBLAS/cuSOLVER, so bench/device-check.sh can build it on the device:
//   nvcc -std=c++20 --expt-relaxed-constexpr -DEIGEN_NO_CUDA -Iinclude bench/gptq_rows.cpp tools/pq/bench_cuda.cu \
//     -lcublas -lcusolver
//   gptq_rows [--formats A,B] [--repeats N] [--host 0|1] [--experts N] [--threads N] [--json FILE]
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <string>

#include <pq/bench/bench.hpp>
#include <pq/bench/gptq.hpp>

int main(int argc, char** argv) {
  try {
    pq::bench::gptq_options o;
    std::string json;
    for (int i = 1; i + 1 < argc; i += 2) {
      const std::string k = argv[i], v = argv[i + 1];
      if (k == "--formats") {
        o.formats = pq::bench::comma_list(v);
      } else if (k == "--repeats") {
        o.repeats = std::stoi(v);
      } else if (k == "--host") {
        o.host = v != "0";
      } else if (k == "--experts") {
        o.experts = std::stoi(v);
      } else if (k == "--threads") {
        o.threads = std::stoi(v);
      } else if (k == "--json") {
        json = v;
      } else {
        std::fprintf(stderr, "gptq_rows: unknown option %s\n", k.c_str());
        return 2;
      }
    }
    const auto rows = pq::bench::run_gptq_cuda(o);
    std::printf("%s", pq::bench::gptq_table(rows).c_str());
    if (!json.empty()) std::ofstream(json) << pq::bench::gptq_json(rows).dump(2) << "\n";
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gptq_rows: error: %s\n", e.what());
    return 1;
  }
}
