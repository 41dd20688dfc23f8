// pq/quant/parallel.hpp: the host backend's only threading primitive: contiguous row ranges on std::thread.
#pragma once
#include <algorithm>
#include <exception>
#include <thread>
#include <vector>

#include <pq/config.hpp>

namespace pq {

// Threads to use for `requested` (0: the hardware's concurrency), never more than there are rows.
inline int resolve_threads(int requested, index_t rows) {
  const int hw = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const int t = requested > 0 ? requested : hw;
  return static_cast<int>(std::clamp<index_t>(t, 1, std::max<index_t>(rows, 1)));
}

// Calls fn(slice, begin, end) for the resolve_threads(threads, rows) contiguous, near-equal slices of
// [0, rows), each on its own thread. The slices depend only on rows and threads, so a fixed thread count
// gives the same work split (and results) on every run. The first exception thrown by a slice is rethrown
// after all slices finished.
template <class Fn>
void parallel_slices(index_t rows, int threads, Fn&& fn) {
  const int t = resolve_threads(threads, rows);
  if (t == 1) {
    fn(0, index_t{0}, rows);
    return;
  }
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(t));
  {
    std::vector<std::jthread> pool;
    pool.reserve(static_cast<std::size_t>(t));
    for (int i = 0; i < t; ++i) {
      const index_t b = rows * i / t, e = rows * (i + 1) / t;
      pool.emplace_back([&, i, b, e] {
        try {
          fn(i, b, e);
        } catch (...) {
          errors[static_cast<std::size_t>(i)] = std::current_exception();
        }
      });
    }
  }
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

// parallel_slices for work that needs no slice index: fn(begin, end).
template <class Fn>
void parallel_rows(index_t rows, int threads, Fn&& fn) {
  parallel_slices(rows, threads, [&](int, index_t b, index_t e) { fn(b, e); });
}

}  // namespace pq
