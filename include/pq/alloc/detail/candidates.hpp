// pq/alloc/detail/candidates.hpp: per-unit dominance filtering and lower convex hull.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include <pq/alloc/problem.hpp>

namespace pq::alloc::detail {

struct Candidate {
  int format;
  std::int64_t bits;
  double loss;
};

// The options no other option beats, sorted by bits ascending with loss strictly descending.
// Tie rule: of options with equal bits the lower loss stays, of equal (bits, loss) the lower
// format index; an option with more bits and no lower loss than a cheaper one is dropped.
inline std::vector<Candidate> non_dominated(const Unit& u) {
  std::vector<Candidate> all;
  all.reserve(u.options.size());
  for (const Option& o : u.options) all.push_back({o.format, o.stored_bits, o.loss});
  std::sort(all.begin(), all.end(), [](const Candidate& a, const Candidate& b) {
    if (a.bits != b.bits) return a.bits < b.bits;
    if (a.loss != b.loss) return a.loss < b.loss;
    return a.format < b.format;
  });
  std::vector<Candidate> kept;
  for (const Candidate& c : all)
    if (kept.empty() || c.loss < kept.back().loss) kept.push_back(c);
  return kept;
}

// Indices (into `c`, sorted as non_dominated returns) of the lower convex hull from the cheapest
// to the lowest-loss candidate; points on a hull edge are left out.
inline std::vector<int> lower_hull(const std::vector<Candidate>& c) {
  std::vector<int> h;
  auto below_or_on = [&](int a, int b, int x) {  // is b on or above the chord a -> x?
    const long double dx1 = static_cast<long double>(c[b].bits - c[a].bits);
    const long double dx2 = static_cast<long double>(c[x].bits - c[a].bits);
    const long double dy1 = static_cast<long double>(c[b].loss) - c[a].loss;
    const long double dy2 = static_cast<long double>(c[x].loss) - c[a].loss;
    return dx1 * dy2 - dx2 * dy1 <= 0.0L;
  };
  for (int i = 0; i < static_cast<int>(c.size()); ++i) {
    while (h.size() >= 2 && below_or_on(h[h.size() - 2], h.back(), i)) h.pop_back();
    h.push_back(i);
  }
  return h;
}

}  // namespace pq::alloc::detail
