// Main of the CUDA suites: without a usable GPU the whole suite reports itself skipped to CTest
// (exit code 77), so "no GPU" is visible in the test summary and never a failure.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>

#include <pq/cuda/check.cuh>

int main(int argc, char** argv) {
  if (!pq::cuda::device_available()) {
    std::printf("SKIPPED: no CUDA device on this machine; the CUDA suites need a GPU\n");
    return 77;
  }
  doctest::Context context(argc, argv);
  return context.run();
}
