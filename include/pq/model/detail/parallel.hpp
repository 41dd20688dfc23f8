// pq/model/detail/parallel.hpp: the forward's unit of parallel work, chunks of whole sequences, as tasks of
// pq::run_tasks (core/parallel.hpp).
#pragma once
#include <Eigen/Core>

#include <algorithm>

#include <pq/core/parallel.hpp>

namespace pq::model::detail {

// Calls fn(first_row, rows) for consecutive chunks of `rows_total` rows, each a multiple of
// `len` rows holding about `chunk_tokens` tokens, on up to `threads` threads (at least one). The first
// exception thrown by fn is rethrown here.
template <class Fn>
void for_each_chunk(Eigen::Index rows_total, Eigen::Index len, Eigen::Index chunk_tokens, int threads, Fn&& fn) {
  const Eigen::Index per = std::max<Eigen::Index>(1, chunk_tokens / len) * len;
  const Eigen::Index chunks = (rows_total + per - 1) / per;
  run_tasks(chunks, std::max(1, threads), [&](std::int64_t c) {
    const Eigen::Index r0 = static_cast<Eigen::Index>(c) * per;
    fn(r0, std::min(per, rows_total - r0));
  });
}

}  // namespace pq::model::detail
