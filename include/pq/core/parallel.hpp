// pq/core/parallel.hpp: pq's one threading primitive. Work is a count of independent tasks; up to `threads`
// std::threads take the next task until none is left. Every host loop that runs in parallel (GPTQ rows,
// forward chunks of sequences) is one call of run_tasks, so there is one place that decides how threads
// are started, joined and how their errors come back.
#pragma once
#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace pq {

// Threads to use for `requested` (0: the hardware's concurrency), never more than there are tasks.
inline int resolve_threads(int requested, std::int64_t tasks) {
  const int hw = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const int t = requested > 0 ? requested : hw;
  return static_cast<int>(std::clamp<std::int64_t>(t, 1, std::max<std::int64_t>(tasks, 1)));
}

// Calls fn(task) for every task in [0, tasks) on resolve_threads(threads, tasks) threads (the calling thread
// is one of them). Which thread runs a task is not fixed, so a task must not depend on it; results written
// per task are deterministic. After the first exception no new task starts, and it is rethrown here once
// every running task has finished.
template <class Fn>
void run_tasks(std::int64_t tasks, int threads, Fn&& fn) {
  if (tasks <= 0) return;
  const int n = resolve_threads(threads, tasks);
  std::atomic<std::int64_t> next{0};
  std::exception_ptr error;
  std::mutex error_mutex;
  auto work = [&] {
    for (std::int64_t t; (t = next++) < tasks;) {
      try {
        fn(t);
      } catch (...) {
        const std::lock_guard lock(error_mutex);
        if (!error) error = std::current_exception();
        next = tasks;
      }
    }
  };
  {
    std::vector<std::jthread> pool;
    pool.reserve(static_cast<std::size_t>(n - 1));
    for (int i = 1; i < n; ++i) pool.emplace_back(work);
    work();
  }
  if (error) std::rethrow_exception(error);
}

// Calls fn(slice, begin, end) for the resolve_threads(threads, rows) contiguous, near-equal slices of
// [0, rows), one task each. The slices depend only on rows and threads, so a fixed thread count gives the
// same work split (and results) on every run.
template <class Index, class Fn>
void parallel_slices(Index rows, int threads, Fn&& fn) {
  const int t = resolve_threads(threads, static_cast<std::int64_t>(rows));
  run_tasks(t, t, [&](std::int64_t i) {
    fn(static_cast<int>(i), static_cast<Index>(rows * i / t), static_cast<Index>(rows * (i + 1) / t));
  });
}

// parallel_slices for work that needs no slice index: fn(begin, end).
template <class Index, class Fn>
void parallel_rows(Index rows, int threads, Fn&& fn) {
  parallel_slices(rows, threads, [&](int, Index b, Index e) { fn(b, e); });
}

}  // namespace pq
