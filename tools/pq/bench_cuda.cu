// The CUDA rows of `pq bench`: the only CUDA translation unit of the driver, built where nvcc is.
#include <pq/bench/cuda.cuh>
#include <pq/bench/gptq.cuh>

namespace pq::bench {
std::vector<row> run_cuda(const options& o) { return run_cuda_rows(o); }
std::vector<gptq_row> run_gptq_cuda(const gptq_options& o) { return run_gptq_rows(o); }
}  // namespace pq::bench
