// pq/pipeline/resources.hpp: what a run cost: peak resident memory of this process.
#pragma once
#include <sys/resource.h>

namespace pq::pipeline {

// Peak resident set size of this process so far, in bytes (Linux reports ru_maxrss in KiB).
inline long long peak_rss_bytes() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<long long>(u.ru_maxrss) * 1024;
}

}  // namespace pq::pipeline
