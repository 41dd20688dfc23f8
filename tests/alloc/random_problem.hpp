// tests/alloc/random_problem.hpp: seeded random allocation problems and a brute-force reference.
#pragma once

#include <cstdint>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <pq/alloc/problem.hpp>

namespace pq::alloc::test {

struct Rng {
  std::mt19937_64 g;
  explicit Rng(std::uint64_t seed) : g(seed) {}
  std::int64_t uniform(std::int64_t lo, std::int64_t hi) {  // inclusive; no std distribution,
    return lo + static_cast<std::int64_t>(g() % static_cast<std::uint64_t>(hi - lo + 1));  // so portable
  }
  double unit() { return static_cast<double>(g() >> 11) * 0x1.0p-53; }
};

// Small instance: up to `max_units` units with 1..`max_options` options each; bits are small
// integers (tight knapsack), losses either continuous or small integers (many exact ties).
inline Problem random_problem(Rng& r, int max_units, int max_options) {
  Problem p;
  for (int f = 0; f < max_options; ++f) p.format_names.push_back(std::string(1, 'F').append(std::to_string(f)));
  const bool integer_loss = r.uniform(0, 2) == 0;
  const auto n = static_cast<int>(r.uniform(1, max_units));
  for (int i = 0; i < n; ++i) {
    Unit u;
    u.name = std::string(1, 'u').append(std::to_string(i));
    u.params = r.uniform(1, 8);
    const auto m = static_cast<int>(r.uniform(1, max_options));
    for (int f = 0; f < m; ++f) {
      const std::int64_t bits = r.uniform(1, 40);
      const double loss = integer_loss ? static_cast<double>(r.uniform(0, 6)) : r.unit() * 10.0;
      u.options.push_back({f, bits, loss});
    }
    p.units.push_back(std::move(u));
  }
  return p;
}

struct Best {
  double loss;
  std::int64_t bits;
};

// Exhaustive minimum over every combination of the original options (no pruning shared with
// the solver): minimal loss, then minimal bits; nullopt when nothing fits.
inline std::optional<Best> brute_force(const Problem& p, std::int64_t budget) {
  std::optional<Best> best;
  std::vector<std::size_t> idx(p.units.size(), 0);
  while (true) {
    std::int64_t bits = 0;
    double loss = 0.0;
    for (std::size_t i = 0; i < idx.size(); ++i) {
      bits += p.units[i].options[idx[i]].stored_bits;
      loss += p.units[i].options[idx[i]].loss;
    }
    if (bits <= budget && (!best || loss < best->loss || (loss == best->loss && bits < best->bits)))
      best = Best{loss, bits};
    std::size_t i = 0;
    while (i < idx.size() && ++idx[i] == p.units[i].options.size()) idx[i++] = 0;
    if (i == idx.size()) return best;
  }
}

}  // namespace pq::alloc::test

namespace pq::alloc::test {

// Independent exact reference for larger instances with small integer bits: dynamic program over
// the exact total bit count (O(units x options x total bits)).
inline std::optional<Best> capacity_dp(const Problem& p, std::int64_t budget) {
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<double> best(static_cast<std::size_t>(budget) + 1, inf), next;
  best[0] = 0.0;
  for (const Unit& u : p.units) {
    next.assign(best.size(), inf);
    for (std::size_t b = 0; b < best.size(); ++b) {
      if (best[b] == inf) continue;
      for (const Option& o : u.options) {
        const std::size_t nb = b + static_cast<std::size_t>(o.stored_bits);
        if (nb < next.size()) next[nb] = std::min(next[nb], best[b] + o.loss);
      }
    }
    best.swap(next);
  }
  std::optional<Best> out;
  for (std::size_t b = 0; b < best.size(); ++b)
    if (best[b] != inf && (!out || best[b] < out->loss)) out = Best{best[b], static_cast<std::int64_t>(b)};
  return out;
}

}  // namespace pq::alloc::test
