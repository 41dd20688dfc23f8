// pq/config.hpp: the few macros every pq header relies on.
#pragma once

#define PQ_VERSION_MAJOR 0
#define PQ_VERSION_MINOR 1
#define PQ_VERSION_PATCH 0
#define PQ_VERSION_STRING "0.1.0"

// PQ_HD marks functions that run on the host and in CUDA kernels alike. Element codecs,
// scale rules and group (de)quantization are all PQ_HD constexpr: one definition for both.
#if defined(__CUDACC__)
#define PQ_HD __host__ __device__
#define PQ_HAS_CUDA() 1
#else
#define PQ_HD
#define PQ_HAS_CUDA() 0
#endif

// True while compiling device code (the device pass of nvcc).
#if defined(__CUDA_ARCH__)
#define PQ_DEVICE_CODE() 1
#else
#define PQ_DEVICE_CODE() 0
#endif

namespace pq {
using index_t = long long;  // matrix dimensions and element counts
}  // namespace pq
