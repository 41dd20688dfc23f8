// pq/cuda/memory.cuh: RAII owners of CUDA streams, events and device memory. Memory is stream-ordered
// (cudaMallocAsync / cudaFreeAsync on the owner's stream), so a buffer freed on an exception path is
// released after the work already queued on its stream, and nothing leaks when a launch throws.
#pragma once
#include <cstddef>
#include <span>
#include <utility>
#include <vector>

#include <cuda_runtime.h>

#include <pq/cuda/check.cuh>

namespace pq::cuda {

// A non-blocking stream, destroyed with its owner.
class stream {
 public:
  stream() { check(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking), "cudaStreamCreate"); }
  ~stream() {
    if (s_) (void)cudaStreamDestroy(s_);
  }
  stream(const stream&) = delete;
  stream& operator=(const stream&) = delete;
  stream(stream&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
  stream& operator=(stream&& o) noexcept {
    std::swap(s_, o.s_);
    return *this;
  }
  cudaStream_t get() const { return s_; }
  operator cudaStream_t() const { return s_; }
  void synchronize() const { check(cudaStreamSynchronize(s_), "cudaStreamSynchronize"); }

 private:
  cudaStream_t s_ = nullptr;
};

// A timing event.
class event {
 public:
  event() { check(cudaEventCreate(&e_), "cudaEventCreate"); }
  ~event() {
    if (e_) (void)cudaEventDestroy(e_);
  }
  event(const event&) = delete;
  event& operator=(const event&) = delete;
  void record(cudaStream_t s) { check(cudaEventRecord(e_, s), "cudaEventRecord"); }
  void synchronize() const { check(cudaEventSynchronize(e_), "cudaEventSynchronize"); }
  // Milliseconds from `start` to this event (both recorded and complete).
  float since(const event& start) const {
    float ms = 0.0f;
    check(cudaEventElapsedTime(&ms, start.e_, e_), "cudaEventElapsedTime");
    return ms;
  }

 private:
  cudaEvent_t e_ = nullptr;
};

// n elements of T in device memory, allocated and freed in the order of `s`.
template <class T>
class device_buffer {
 public:
  device_buffer() = default;
  device_buffer(std::size_t n, cudaStream_t s) : n_(n), s_(s) {
    if (n) check(cudaMallocAsync(reinterpret_cast<void**>(&p_), n * sizeof(T), s), "cudaMallocAsync");
  }
  // A copy of host data.
  device_buffer(std::span<const T> host, cudaStream_t s) : device_buffer(host.size(), s) { upload(host); }
  ~device_buffer() { release(); }
  device_buffer(const device_buffer&) = delete;
  device_buffer& operator=(const device_buffer&) = delete;
  device_buffer(device_buffer&& o) noexcept
      : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)), s_(o.s_) {}
  device_buffer& operator=(device_buffer&& o) noexcept {
    if (this != &o) {
      release();
      p_ = std::exchange(o.p_, nullptr);
      n_ = std::exchange(o.n_, 0);
      s_ = o.s_;
    }
    return *this;
  }

  T* data() { return p_; }
  const T* data() const { return p_; }
  std::size_t size() const { return n_; }
  std::size_t bytes() const { return n_ * sizeof(T); }
  cudaStream_t stream() const { return s_; }

  void upload(std::span<const T> host) {
    if (host.size() != n_) throw cuda_error("device_buffer::upload: size mismatch");
    if (n_) check(cudaMemcpyAsync(p_, host.data(), bytes(), cudaMemcpyHostToDevice, s_), "cudaMemcpyAsync H2D");
  }
  void fill_zero() {
    if (n_) check(cudaMemsetAsync(p_, 0, bytes(), s_), "cudaMemsetAsync");
  }
  void fill_bytes(int byte) {
    if (n_) check(cudaMemsetAsync(p_, byte, bytes(), s_), "cudaMemsetAsync");
  }
  // A host copy (waits for the stream).
  std::vector<T> download() const {
    std::vector<T> host(n_);
    if (n_) {
      check(cudaMemcpyAsync(host.data(), p_, bytes(), cudaMemcpyDeviceToHost, s_), "cudaMemcpyAsync D2H");
      check(cudaStreamSynchronize(s_), "cudaStreamSynchronize");
    }
    return host;
  }

 private:
  void release() noexcept {
    if (p_) (void)cudaFreeAsync(p_, s_);
    p_ = nullptr;
  }
  T* p_ = nullptr;
  std::size_t n_ = 0;
  cudaStream_t s_ = nullptr;
};

}  // namespace pq::cuda
