// pq/cuda/check.cuh: CUDA error checking and device discovery shared by kernels, tests and benchmarks.
#pragma once
#include <stdexcept>
#include <string>

#include <cuda_runtime.h>

namespace pq::cuda {

inline void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

// True when a CUDA device can run kernels here (false on machines without a GPU or driver).
inline bool device_available() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  return n > 0;
}

}  // namespace pq::cuda
