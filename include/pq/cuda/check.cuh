// pq/cuda/check.cuh: CUDA error checking and device discovery shared by kernels, tests and benchmarks.
#pragma once
#include <string>

#include <cuda_runtime.h>

#include <pq/error.hpp>

namespace pq::cuda {

// A CUDA call that failed: the message names the call and the runtime's reason.
struct cuda_error : pq::error {
  using pq::error::error;
};

inline void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw cuda_error(std::string(what) + ": " + cudaGetErrorString(e));
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

// Why there is no usable device, for a message ("" when there is one).
inline std::string no_device_reason() {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    return std::string("cudaGetDeviceCount: ") + cudaGetErrorString(e);
  }
  return n > 0 ? std::string() : std::string("no CUDA device is visible");
}

}  // namespace pq::cuda
