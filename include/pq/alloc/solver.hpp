// pq/alloc/solver.hpp: exact multiple-choice knapsack: one format per decision unit, minimal
// total predicted loss, total stored bits within an integer budget.
//
// Algorithm (see docs/alloc.md for the proof):
//  1. Per unit, drop dominated options and build the lower convex hull of (bits, loss).
//     All hull segments of all units are sorted once by slope (loss saved per bit).
//  2. Per budget B: the longest prefix of that order that fits is the LP-greedy solution; its
//     first non-fitting segment gives the multiplier lambda. A one-pass fill of the leftover
//     bits gives an incumbent U (feasible, so U >= OPT).
//  3. Lagrangian bound: L = sum_i min_k (l_ik + lambda b_ik) - lambda B <= OPT, and for every
//     feasible x, loss(x) >= L + sum_i rc_i(x_i) with rc_ik = l_ik + lambda b_ik - min_k(...).
//     An option with rc > U - L cannot be part of a solution better than U: it is removed.
//  4. Units left with one option are fixed; the others (the core) are solved exactly by a
//     dynamic program over Pareto frontiers of exact integer bits (no discretization), pruned
//     by capacity and by the same reduced-cost bound.
// Result: minimal loss; among equal losses the fewest bits; remaining ties by the order the
// frontier meets them (units in input order, options by ascending bits). Deterministic.
// Cost: preparation O(N m log m + S log S) for N units, m options, S hull segments;
// each budget O(N m + log S) plus the core DP, which is empty or tiny on real cost tables.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <pq/alloc/detail/candidates.hpp>
#include <pq/alloc/detail/core_dp.hpp>
#include <pq/alloc/problem.hpp>

namespace pq::alloc {

struct SolveStats {
  int core_units = 0;          // units the exact DP had to decide
  std::size_t max_frontier = 0;  // largest Pareto frontier the DP held
  std::size_t states = 0;        // frontier states created in total
  double incumbent_gap = 0.0;    // heuristic incumbent minus Lagrangian bound, before the DP
};

struct Assignment {
  double target_bpp = 0.0;          // what was asked (bits per weight)
  std::int64_t budget_bits = 0;     // the exact integer budget it means
  std::vector<int> format;          // chosen format index, per unit in input order
  std::int64_t bits = 0;            // total stored bits of the choice
  double loss = 0.0;                // total predicted loss of the choice (summed in unit order)
  double bpp = 0.0;                 // bits / total params
  double lower_bound = 0.0;         // the Lagrangian bound L (loss >= L always)
  SolveStats stats;
};

class Solver {
 public:
  // Validates (throws invalid_problem) and does all budget-independent work.
  explicit Solver(Problem problem) : problem_(std::move(problem)) {
    validate(problem_);
    params_ = total_params(problem_);
    prepare();
  }

  [[nodiscard]] const Problem& problem() const noexcept { return problem_; }
  [[nodiscard]] std::int64_t params() const noexcept { return params_; }
  // Bits when every unit takes its smallest / its lowest-loss candidate.
  [[nodiscard]] std::int64_t min_bits() const noexcept { return base_bits_; }
  [[nodiscard]] std::int64_t max_useful_bits() const noexcept { return base_bits_ + prefix_.back(); }
  // The smallest target (bits/weight) that is feasible; targets at or above the max useful
  // one all give the lowest-loss choice.
  [[nodiscard]] double min_bpp() const { return bpp_admitting(min_bits(), params_); }
  [[nodiscard]] double max_useful_bpp() const { return bpp_admitting(max_useful_bits(), params_); }
  // Indices of units with a single candidate (they keep it at every budget).
  [[nodiscard]] std::vector<int> forced_units() const {
    std::vector<int> out;
    for (int i = 0; i < static_cast<int>(cands_.size()); ++i)
      if (problem_.units[static_cast<std::size_t>(i)].options.size() == 1) out.push_back(i);
    return out;
  }

  // Optimal assignment at a bits-per-weight target; throws infeasible_budget.
  [[nodiscard]] Assignment solve(double target_bpp) const {
    return solve_bits(budget_bits(target_bpp, params_), target_bpp);
  }

  // Optimal assignment within an exact integer bit budget; throws infeasible_budget.
  [[nodiscard]] Assignment solve_bits(std::int64_t budget, double target_bpp = 0.0) const {
    if (budget < base_bits_) throw_infeasible(budget, target_bpp);
    const std::size_t p = fitting_prefix(budget);
    std::vector<int> pick = greedy_vertices(p);
    Assignment out;
    out.target_bpp = target_bpp > 0.0 ? target_bpp : static_cast<double>(budget) / static_cast<double>(params_);
    out.budget_bits = budget;
    if (p == segs_.size()) {  // everything at its lowest loss: the unconstrained optimum
      finish(out, pick, sum_loss(pick));
      return out;
    }
    const double lambda = segs_[p].slope;
    fill_leftover(pick, budget, p);
    const Bound bound = lagrangian(lambda, budget);
    // Restricted passes (options within a fraction of the gap) find a good incumbent cheaply;
    // the last pass admits every option the bound allows and so certifies optimality.
    std::vector<int> best = pick;
    for (const double share : {1.0 / 256.0, 1.0 / 16.0, 1.0})
      best = exact_core(best, sum_loss(best), bound, lambda, budget, share, out.stats);
    finish(out, best, bound.value);
    return out;
  }

 private:
  struct Segment {  // one hull edge of one unit: moving from hull vertex k to k+1
    int unit;
    int to;               // candidate index of the upper end
    std::int64_t dbits;   // > 0
    double slope;         // loss saved per bit, > 0
  };
  struct Bound {
    double value;                   // L(lambda)
    double margin;                  // floating-point slack added to every pruning test
    std::vector<double> unit_min;   // min_k (l_ik + lambda b_ik) per unit
  };

  void prepare() {
    cands_.reserve(problem_.units.size());
    for (const Unit& u : problem_.units) {
      cands_.push_back(detail::non_dominated(u));
      max_options_ = std::max(max_options_, cands_.back().size());
    }
    std::vector<std::vector<int>> hulls;
    for (int i = 0; i < static_cast<int>(cands_.size()); ++i) {
      const auto& c = cands_[static_cast<std::size_t>(i)];
      base_bits_ += c.front().bits;
      hulls.push_back(detail::lower_hull(c));
      const auto& h = hulls.back();
      double prev = std::numeric_limits<double>::infinity();
      for (std::size_t k = 1; k < h.size(); ++k) {
        const auto& a = c[static_cast<std::size_t>(h[k - 1])];
        const auto& b = c[static_cast<std::size_t>(h[k])];
        const std::int64_t db = b.bits - a.bits;
        // Clamp keeps a unit's slopes non-increasing even under floating-point rounding, so
        // the global order applies each unit's edges in hull order.
        prev = std::min(prev, (a.loss - b.loss) / static_cast<double>(db));
        segs_.push_back({i, h[k], db, prev});
      }
    }
    std::stable_sort(segs_.begin(), segs_.end(), [](const Segment& a, const Segment& b) {
      if (a.slope != b.slope) return a.slope > b.slope;
      return a.unit < b.unit;  // stable: a unit's own edges stay in hull order
    });
    prefix_.assign(segs_.size() + 1, 0);
    for (std::size_t s = 0; s < segs_.size(); ++s) prefix_[s + 1] = prefix_[s] + segs_[s].dbits;
  }

  [[noreturn]] void throw_infeasible(std::int64_t budget, double target_bpp) const {
    const double need = min_bpp();
    std::ostringstream msg;
    msg.precision(17);
    msg << "bit budget " << (target_bpp > 0.0 ? target_bpp : static_cast<double>(budget) / static_cast<double>(params_))
        << " bits/weight (" << budget << " bits) is infeasible: the smallest candidate of every unit "
        << "already needs " << base_bits_ << " bits; the smallest feasible budget is " << need
        << " bits/weight";
    throw infeasible_budget(msg.str(), need);
  }

  // Longest prefix of the slope order whose edges all fit.
  [[nodiscard]] std::size_t fitting_prefix(std::int64_t budget) const {
    const auto it = std::upper_bound(prefix_.begin(), prefix_.end(), budget - base_bits_);
    return static_cast<std::size_t>(it - prefix_.begin()) - 1;
  }

  [[nodiscard]] std::vector<int> greedy_vertices(std::size_t p) const {
    std::vector<int> pick(cands_.size(), 0);
    for (std::size_t s = 0; s < p; ++s) pick[static_cast<std::size_t>(segs_[s].unit)] = segs_[s].to;
    return pick;
  }

  [[nodiscard]] std::int64_t sum_bits(const std::vector<int>& pick) const {
    std::int64_t b = 0;
    for (std::size_t i = 0; i < pick.size(); ++i) b += cands_[i][static_cast<std::size_t>(pick[i])].bits;
    return b;
  }
  [[nodiscard]] double sum_loss(const std::vector<int>& pick) const {
    double l = 0.0;
    for (std::size_t i = 0; i < pick.size(); ++i) l += cands_[i][static_cast<std::size_t>(pick[i])].loss;
    return l;
  }

  // Spend leftover bits: units in the order of their next edge's slope, each moved to the
  // lowest-loss candidate that still fits. Only tightens the incumbent.
  void fill_leftover(std::vector<int>& pick, std::int64_t budget, std::size_t p) const {
    std::int64_t slack = budget - sum_bits(pick);
    for (std::size_t s = p; s < segs_.size() && slack > 0; ++s) {
      const auto i = static_cast<std::size_t>(segs_[s].unit);
      const auto& c = cands_[i];
      const auto cur = static_cast<std::size_t>(pick[i]);
      std::size_t best = cur;
      for (std::size_t k = cur + 1; k < c.size() && c[k].bits - c[cur].bits <= slack; ++k) best = k;
      slack -= c[best].bits - c[cur].bits;
      pick[i] = static_cast<int>(best);
    }
  }

  [[nodiscard]] Bound lagrangian(double lambda, std::int64_t budget) const {
    Bound b{0.0, 0.0, {}};
    b.unit_min.reserve(cands_.size());
    long double sum = 0.0L, magnitude = 0.0L;
    for (const auto& c : cands_) {
      double m = std::numeric_limits<double>::infinity();
      for (const auto& k : c) m = std::min(m, k.loss + lambda * static_cast<double>(k.bits));
      b.unit_min.push_back(m);
      sum += m;
      magnitude += std::fabs(m);
    }
    const long double lb = static_cast<long double>(lambda) * static_cast<long double>(budget);
    b.value = static_cast<double>(sum - lb);
    // Worst-case rounding of recursive summation is (terms) * eps * sum|x|; the DP adds and
    // removes each of the <= N m hull edges once, so 4 N m + 64 terms bound every sum it forms.
    const auto terms = static_cast<long double>(4 * cands_.size() * max_options_ + 64);
    b.margin = static_cast<double>(terms * std::numeric_limits<double>::epsilon() * (magnitude + lb) + 1e-300L);
    return b;
  }

  // Step 3 + 4: admit options with rc <= share * (U - L) (all that can beat U when share is 1)
  // besides the incumbent's, fix single-option units, exact DP over the rest.
  std::vector<int> exact_core(const std::vector<int>& incumbent, double upper, const Bound& bound,
                              double lambda, std::int64_t budget, double share, SolveStats& stats) const {
    const double gap = std::max(upper - bound.value, 0.0) + bound.margin;
    const double admit = share * gap;
    if (share == 1.0) stats.incumbent_gap = upper - bound.value;
    std::vector<int> fixed = incumbent;
    std::vector<int> core;                     // unit indices
    std::vector<std::vector<int>> core_cands;  // viable candidate indices per core unit
    std::vector<detail::CoreItem> items;
    std::int64_t capacity = budget;
    for (std::size_t i = 0; i < cands_.size(); ++i) {
      detail::CoreItem item{{}, {}, -1};
      std::vector<int> idx;
      for (std::size_t k = 0; k < cands_[i].size(); ++k) {
        const auto& c = cands_[i][k];
        const double rc = std::max(0.0, c.loss + lambda * static_cast<double>(c.bits) - bound.unit_min[i]);
        if (rc > admit && static_cast<int>(k) != incumbent[i]) continue;
        if (static_cast<int>(k) == incumbent[i]) item.incumbent = static_cast<int>(idx.size());
        idx.push_back(static_cast<int>(k));
        item.cands.push_back(c);
        item.rc.push_back(rc);
      }
      // The incumbent meets every bound it defines, so it is always viable; guard anyway.
      if (item.incumbent < 0) return incumbent;
      if (idx.size() == 1) {
        fixed[i] = idx.front();
        capacity -= cands_[i][static_cast<std::size_t>(idx.front())].bits;
        continue;
      }
      core.push_back(static_cast<int>(i));
      core_cands.push_back(std::move(idx));
      items.push_back(std::move(item));
    }
    if (share == 1.0) stats.core_units = static_cast<int>(core.size());
    if (core.empty()) return incumbent;
    // Largest units first: what is left undecided is fine-grained, where the LP bound is tight.
    std::vector<std::size_t> order(core.size());
    for (std::size_t j = 0; j < order.size(); ++j) order[j] = j;
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
      return problem_.units[static_cast<std::size_t>(core[a])].params >
             problem_.units[static_cast<std::size_t>(core[b])].params;
    });
    std::vector<detail::CoreItem> ordered;
    for (const std::size_t j : order) ordered.push_back(std::move(items[j]));
    detail::CoreStats cs;
    const auto picks = detail::solve_core(ordered, capacity, gap, bound.margin, cs);
    stats.max_frontier = std::max(stats.max_frontier, cs.max_frontier);
    stats.states += cs.states;
    std::vector<int> best = incumbent;
    double best_loss = sum_loss(best);
    std::int64_t best_bits = sum_bits(best);
    for (const auto& pk : picks) {
      std::vector<int> full = fixed;
      for (std::size_t j = 0; j < order.size(); ++j)
        full[static_cast<std::size_t>(core[order[j]])] = core_cands[order[j]][static_cast<std::size_t>(pk[j])];
      const double l = sum_loss(full);
      const std::int64_t b = sum_bits(full);
      if (b <= budget && (l < best_loss || (l == best_loss && b < best_bits)))
        best = std::move(full), best_loss = l, best_bits = b;
    }
    return best;
  }

  void finish(Assignment& out, const std::vector<int>& pick, double lower_bound) const {
    out.format.resize(pick.size());
    for (std::size_t i = 0; i < pick.size(); ++i) out.format[i] = cands_[i][static_cast<std::size_t>(pick[i])].format;
    out.bits = sum_bits(pick);
    out.loss = sum_loss(pick);
    out.bpp = static_cast<double>(out.bits) / static_cast<double>(params_);
    out.lower_bound = std::min(lower_bound, out.loss);
  }

  Problem problem_;
  std::int64_t params_ = 0;
  std::int64_t base_bits_ = 0;
  std::size_t max_options_ = 0;
  std::vector<std::vector<detail::Candidate>> cands_;  // per unit, non-dominated, bits ascending
  std::vector<Segment> segs_;                          // all hull edges, slope descending
  std::vector<std::int64_t> prefix_;                   // prefix sums of segs_[].dbits
};

}  // namespace pq::alloc
