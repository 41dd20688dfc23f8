// pq/alloc/detail/core_dp.hpp: exact dynamic program over the core units: Pareto frontiers of
// (exact integer bits, loss), pruned by capacity, by a reduced-cost bound and by the LP bound of
// the undecided units (a Fenwick tree over their hull edges in slope order).
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

#include <pq/alloc/detail/candidates.hpp>

namespace pq::alloc::detail {

struct CoreItem {
  std::vector<Candidate> cands;  // viable candidates, bits ascending, loss strictly descending
  std::vector<double> rc;        // reduced cost of each
  int incumbent;                 // index of the incumbent's choice
};

struct CoreStats {
  std::size_t max_frontier = 0;
  std::size_t states = 0;
};

// Hull edges of all undecided items, in slope order, with prefix sums that support removing
// an item: LP value of the undecided items at any capacity in O(log S).
class EdgeTree {
 public:
  struct Edge {
    int item;
    int to;  // candidate index at the upper end
    std::int64_t dbits;
    double gain;
    double slope;
  };

  explicit EdgeTree(const std::vector<CoreItem>& items) {
    for (int i = 0; i < static_cast<int>(items.size()); ++i) {
      const auto& c = items[static_cast<std::size_t>(i)].cands;
      const std::vector<int> h = lower_hull(c);
      double prev = std::numeric_limits<double>::infinity();
      for (std::size_t k = 1; k < h.size(); ++k) {
        const auto& a = c[static_cast<std::size_t>(h[k - 1])];
        const auto& b = c[static_cast<std::size_t>(h[k])];
        const double gain = a.loss - b.loss;
        prev = std::min(prev, gain / static_cast<double>(b.bits - a.bits));
        edges_.push_back({i, h[k], b.bits - a.bits, gain, prev});
      }
    }
    std::stable_sort(edges_.begin(), edges_.end(),
                     [](const Edge& a, const Edge& b) { return a.slope > b.slope; });
    const std::size_t n = edges_.size();
    bits_.assign(n + 1, 0);
    gain_.assign(n + 1, 0.0);
    by_item_.resize(items.size());
    for (std::size_t p = 0; p < n; ++p) {
      by_item_[static_cast<std::size_t>(edges_[p].item)].push_back(p);
      add(p, edges_[p].dbits, edges_[p].gain);
    }
    top_ = 1;
    while (top_ * 2 <= n) top_ *= 2;
  }

  void remove_item(int item) {
    for (const std::size_t p : by_item_[static_cast<std::size_t>(item)]) add(p, -edges_[p].dbits, -edges_[p].gain);
  }

  struct Fill {
    double full_gain;  // gain of the longest fitting prefix of edges (an integer solution)
    double lp_gain;    // plus the fractional part of the next edge (the LP relaxation)
  };
  // Edges of the items still present, filled greedily into `room` bits.
  [[nodiscard]] Fill fill(std::int64_t room) const {
    std::size_t pos = 0;
    std::int64_t used = 0;
    double gain = 0.0;
    for (std::size_t step = top_; step > 0 && !edges_.empty(); step /= 2) {
      if (pos + step <= edges_.size() && used + bits_[pos + step] <= room) {
        pos += step;
        used += bits_[pos];
        gain += gain_[pos];
      }
    }
    // Maximality makes edge `pos` present (a removed edge has zero bits and would fit).
    const double frac = pos < edges_.size() ? edges_[pos].slope * static_cast<double>(room - used) : 0.0;
    return {gain, gain + frac};
  }

  // The integer greedy solution behind fill(room) for items after `decided`: sets pick[i].
  void greedy_pick(int decided, std::int64_t room, std::vector<int>& pick) const {
    for (const Edge& e : edges_) {
      if (e.item <= decided) continue;
      if (e.dbits > room) return;
      room -= e.dbits;
      pick[static_cast<std::size_t>(e.item)] = e.to;
    }
  }

 private:
  void add(std::size_t p, std::int64_t db, double dg) {
    for (std::size_t i = p + 1; i < bits_.size(); i += i & (~i + 1)) bits_[i] += db, gain_[i] += dg;
  }
  std::vector<Edge> edges_;
  std::vector<std::int64_t> bits_;  // Fenwick tree over edges_ (1-based)
  std::vector<double> gain_;
  std::vector<std::vector<std::size_t>> by_item_;
  std::size_t top_ = 0;
};

// Exact minimum of the core: returns the candidate picks worth comparing (the incumbent, the
// best greedy completion found on the way, and the DP optimum when one beats the bound); the
// caller keeps the best by (loss, bits). `rc_gap` and `margin` come from the Lagrangian bound.
inline std::vector<std::vector<int>> solve_core(const std::vector<CoreItem>& items, std::int64_t capacity,
                                                double rc_gap, double margin, CoreStats& stats) {
  struct State {
    std::int64_t bits;
    double loss;
    double rc;
    int parent;
    int cand;
  };
  const int n = static_cast<int>(items.size());
  std::vector<int> incumbent(items.size());
  double upper = 0.0;
  std::int64_t rest_bits = 0;
  double rest_loss = 0.0;
  for (std::size_t j = 0; j < items.size(); ++j) {
    incumbent[j] = items[j].incumbent;
    upper += items[j].cands[static_cast<std::size_t>(items[j].incumbent)].loss;
    rest_bits += items[j].cands.front().bits;
    rest_loss += items[j].cands.front().loss;
  }
  std::vector<std::vector<int>> picks{incumbent};
  const double upper0 = upper;  // rc pruning tightens as the incumbent improves
  struct Completion { int stage, parent, cand; std::int64_t room; };
  Completion best_completion{-1, -1, -1, 0};

  EdgeTree tree(items);
  std::vector<std::vector<State>> stages;
  std::vector<State> front{{0, 0.0, 0.0, -1, -1}}, next;
  for (int j = 0; j < n; ++j) {
    const CoreItem& it = items[static_cast<std::size_t>(j)];
    tree.remove_item(j);
    rest_bits -= it.cands.front().bits;
    rest_loss -= it.cands.front().loss;
    next.clear();
    for (std::size_t s = 0; s < front.size(); ++s) {
      for (std::size_t k = 0; k < it.cands.size(); ++k) {
        const State st{front[s].bits + it.cands[k].bits, front[s].loss + it.cands[k].loss,
                       front[s].rc + it.rc[k], static_cast<int>(s), static_cast<int>(k)};
        const std::int64_t room = capacity - st.bits - rest_bits;
        if (room < 0 || st.rc > rc_gap - (upper0 - upper)) continue;
        const EdgeTree::Fill f = tree.fill(room);
        if (st.loss + rest_loss - f.lp_gain > upper + margin) continue;
        const double greedy = st.loss + rest_loss - f.full_gain;
        if (greedy < upper) {
          upper = greedy;
          best_completion = {j, static_cast<int>(s), static_cast<int>(k), room};
        }
        next.push_back(st);
      }
    }
    std::stable_sort(next.begin(), next.end(), [](const State& a, const State& b) {
      return a.bits != b.bits ? a.bits < b.bits : a.loss < b.loss;
    });
    std::vector<State> kept;
    for (const State& st : next)
      if (kept.empty() || st.loss < kept.back().loss) kept.push_back(st);
    stats.states += kept.size();
    stats.max_frontier = std::max(stats.max_frontier, kept.size());
    stages.push_back(std::move(front));
    front = std::move(kept);
    if (front.empty()) break;
  }
  auto trace = [&](int stage, int parent, int cand, std::vector<int>& pick) {
    pick[static_cast<std::size_t>(stage)] = cand;
    for (int j = stage; j-- > 0;) {
      const State& st = stages[static_cast<std::size_t>(j + 1)][static_cast<std::size_t>(parent)];
      pick[static_cast<std::size_t>(j)] = st.cand;
      parent = st.parent;
    }
  };
  if (best_completion.stage >= 0) {
    std::vector<int> pick(items.size(), 0);
    trace(best_completion.stage, best_completion.parent, best_completion.cand, pick);
    tree.greedy_pick(best_completion.stage, best_completion.room, pick);
    picks.push_back(std::move(pick));
  }
  if (!front.empty() && static_cast<int>(stages.size()) == n) {
    const State& last = front.back();  // loss strictly decreases along the frontier
    std::vector<int> pick(items.size(), 0);
    trace(n - 1, last.parent, last.cand, pick);
    picks.push_back(std::move(pick));
  }
  return picks;
}

}  // namespace pq::alloc::detail
