// pq/model/detail/parallel.hpp: run a function over chunks of whole sequences on a few threads.
#pragma once
#include <Eigen/Core>

#include <algorithm>
#include <atomic>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace pq::model::detail {

// Calls fn(first_row, rows) for consecutive chunks of `rows_total` rows, each a multiple of
// `len` rows holding about `chunk_tokens` tokens, on up to `threads` threads. The first
// exception thrown by fn is rethrown here.
template <class Fn>
void for_each_chunk(Eigen::Index rows_total, Eigen::Index len, Eigen::Index chunk_tokens, int threads, Fn&& fn) {
  const Eigen::Index per = std::max<Eigen::Index>(1, chunk_tokens / len) * len;
  const Eigen::Index chunks = (rows_total + per - 1) / per;
  std::atomic<Eigen::Index> next{0};
  std::exception_ptr error;
  std::mutex error_mutex;
  auto work = [&] {
    for (Eigen::Index c; (c = next++) < chunks;) {
      try {
        const Eigen::Index r0 = c * per;
        fn(r0, std::min(per, rows_total - r0));
      } catch (...) {
        std::lock_guard lock(error_mutex);
        if (!error) error = std::current_exception();
        next = chunks;
      }
    }
  };
  const int n = static_cast<int>(std::min<Eigen::Index>(std::max(1, threads), chunks));
  std::vector<std::thread> pool;
  for (int t = 1; t < n; ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  if (error) std::rethrow_exception(error);
}

}  // namespace pq::model::detail
