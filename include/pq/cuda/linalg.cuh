// pq/cuda/linalg.cuh: RAII cuBLAS and cuSOLVER handles bound to a stream, their error checks, and the dense
// building blocks GPTQ, the statistics and the costs share (row-major views over cuBLAS's column-major API).
// Part of pq::cuda_linalg (pq::cuda plus CUDA::cublas and CUDA::cusolver).
#pragma once
#include <string>
#include <utility>

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>

#include <pq/config.hpp>
#include <pq/cuda/check.cuh>

namespace pq::cuda {

inline void check(cublasStatus_t e, const char* what) {
  if (e != CUBLAS_STATUS_SUCCESS) throw cuda_error(std::string(what) + ": " + cublasGetStatusString(e));
}
inline void check(cusolverStatus_t e, const char* what) {
  if (e != CUSOLVER_STATUS_SUCCESS) throw cuda_error(std::string(what) + ": cuSOLVER status " + std::to_string(static_cast<int>(e)));
}

// A cuBLAS handle on one stream. Math mode stays CUBLAS_DEFAULT_MATH (no TF32): GPTQ's trailing update and
// the cost GEMMs are compared with the host's fp32/fp64 results and must not lose 13 bits of mantissa.
class blas {
 public:
  explicit blas(cudaStream_t s) {
    check(cublasCreate(&h_), "cublasCreate");
    check(cublasSetStream(h_, s), "cublasSetStream");
    check(cublasSetPointerMode(h_, CUBLAS_POINTER_MODE_HOST), "cublasSetPointerMode");
  }
  ~blas() {
    if (h_) (void)cublasDestroy(h_);
  }
  blas(const blas&) = delete;
  blas& operator=(const blas&) = delete;
  blas(blas&& o) noexcept : h_(std::exchange(o.h_, nullptr)) {}
  cublasHandle_t get() const { return h_; }

 private:
  cublasHandle_t h_ = nullptr;
};

// A cuSOLVER dense handle (and its 64-bit API parameters) on one stream.
class solver {
 public:
  explicit solver(cudaStream_t s) {
    check(cusolverDnCreate(&h_), "cusolverDnCreate");
    check(cusolverDnSetStream(h_, s), "cusolverDnSetStream");
    check(cusolverDnCreateParams(&p_), "cusolverDnCreateParams");
  }
  ~solver() {
    if (p_) (void)cusolverDnDestroyParams(p_);
    if (h_) (void)cusolverDnDestroy(h_);
  }
  solver(const solver&) = delete;
  solver& operator=(const solver&) = delete;
  cusolverDnHandle_t get() const { return h_; }
  cusolverDnParams_t params() const { return p_; }

 private:
  cusolverDnHandle_t h_ = nullptr;
  cusolverDnParams_t p_ = nullptr;
};

// Row-major C[m, n] = beta·C + alpha·op(A)·op(B) in fp32, leading dimensions in elements. A is [m, k], or
// given as Aᵀ [k, m] when trans_a; B is [k, n], or given as Bᵀ [n, k] when trans_b. cuBLAS sees the
// transposes (Cᵀ = op(B)ᵀ·op(A)ᵀ, column-major, the same leading dimensions).
inline void gemm_row_major(const blas& b, index_t m, index_t n, index_t k, float alpha, const float* A, index_t lda,
                           bool trans_a, const float* B, index_t ldb, bool trans_b, float beta, float* C, index_t ldc) {
  check(cublasSgemm(b.get(), trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                    static_cast<int>(n), static_cast<int>(m), static_cast<int>(k), &alpha, B, static_cast<int>(ldb), A,
                    static_cast<int>(lda), &beta, C, static_cast<int>(ldc)),
        "cublasSgemm");
}

}  // namespace pq::cuda
