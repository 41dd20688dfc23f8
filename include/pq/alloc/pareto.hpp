// pq/alloc/pareto.hpp: budget ranges (LO:HI:STEP), the Pareto sweep over budgets, and the
// Kneedle knee of the loss-versus-bits curve.
#pragma once

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <pq/alloc/problem.hpp>
#include <pq/alloc/solver.hpp>

namespace pq::alloc {

struct BudgetRange {
  double lo = 0.0;
  double hi = 0.0;
  double step = 0.0;

  static constexpr std::size_t max_points = 100'000;

  // lo, lo + step, ... up to hi inclusive (hi itself is included when it is on the grid up to
  // a 1e-9 relative tolerance); every value rounded to 9 decimals so 4 + 3 * 0.1 prints 4.3.
  [[nodiscard]] std::vector<double> targets() const {
    const auto n = static_cast<std::size_t>(std::floor((hi - lo) / step * (1.0 + 1e-12) + 1e-9));
    std::vector<double> t;
    t.reserve(n + 1);
    for (std::size_t i = 0; i <= n; ++i) {
      const double v = std::round((lo + static_cast<double>(i) * step) * 1e9) / 1e9;
      t.push_back(std::min(v, hi));
    }
    return t;
  }
};

// Parses "LO:HI:STEP" (bits per weight). `flag` names the option in the error message.
inline BudgetRange parse_budget_range(std::string_view text, std::string_view flag = "--pareto") {
  const std::string where = std::string(flag) + " '" + std::string(text) + "'";
  double v[3] = {0.0, 0.0, 0.0};
  std::size_t start = 0;
  for (int k = 0; k < 3; ++k) {
    const std::size_t colon = k < 2 ? text.find(':', start) : text.size();
    if (colon == std::string_view::npos)
      throw alloc_error(where + ": expected LO:HI:STEP, e.g. 4.25:8.5:0.25");
    const std::string_view field = text.substr(start, colon - start);
    const char* end = field.data() + field.size();
    const auto [ptr, ec] = std::from_chars(field.data(), end, v[k]);
    if (field.empty() || ec != std::errc() || ptr != end || !std::isfinite(v[k])) {
      static constexpr const char* names[] = {"LO", "HI", "STEP"};
      throw alloc_error(where + ": " + names[k] + " '" + std::string(field) + "' is not a number");
    }
    start = colon + 1;
  }
  const BudgetRange r{v[0], v[1], v[2]};
  if (r.lo <= 0.0) throw alloc_error(where + ": LO must be positive");
  if (r.hi > 1024.0) throw alloc_error(where + ": HI must be at most 1024 bits/weight");
  if (r.lo > r.hi) throw alloc_error(where + ": LO must not exceed HI");
  if (r.step <= 0.0) throw alloc_error(where + ": STEP must be positive");
  if ((r.hi - r.lo) / r.step >= static_cast<double>(BudgetRange::max_points))
    throw alloc_error(where + ": more than " + std::to_string(BudgetRange::max_points) + " budgets");
  return r;
}

// Optimal assignments at every target, in the order given. All budget-independent work was
// done once by the Solver; each budget costs a binary search, one O(units x options) pass and
// the (usually tiny) exact core. Throws infeasible_budget for a target below solver.min_bpp().
inline std::vector<Assignment> sweep(const Solver& solver, std::span<const double> targets) {
  std::vector<Assignment> out;
  out.reserve(targets.size());
  for (const double t : targets) out.push_back(solver.solve(t));
  return out;
}

// Indices of the points on the Pareto curve: distinct (bits, loss), sorted by bits, with
// strictly decreasing loss (the first of equal points in input order is kept).
inline std::vector<std::size_t> pareto_front(std::span<const Assignment> points) {
  std::vector<std::size_t> idx(points.size());
  for (std::size_t i = 0; i < idx.size(); ++i) idx[i] = i;
  std::stable_sort(idx.begin(), idx.end(), [&](std::size_t a, std::size_t b) {
    if (points[a].bits != points[b].bits) return points[a].bits < points[b].bits;
    return points[a].loss < points[b].loss;
  });
  std::vector<std::size_t> front;
  for (const std::size_t i : idx)
    if (front.empty() || points[i].loss < points[front.back()].loss) front.push_back(i);
  return front;
}

// Kneedle (Satopaa et al. 2011) on the Pareto curve, offline form: normalize bpp and loss to
// [0, 1]; for a decreasing convex curve the knee is the point farthest below the chord from
// (0, 1) to (1, 0), i.e. the maximum of (1 - x) - y. Returns the index into `points`, or
// nullopt with fewer than three Pareto points or no point below the chord. Ties: lowest bpp.
inline std::optional<std::size_t> knee(std::span<const Assignment> points) {
  const std::vector<std::size_t> front = pareto_front(points);
  if (front.size() < 3) return std::nullopt;
  const Assignment& first = points[front.front()];
  const Assignment& last = points[front.back()];
  const double dx = last.bpp - first.bpp, dy = first.loss - last.loss;
  std::optional<std::size_t> best;
  double best_diff = 0.0;
  for (const std::size_t i : front) {
    const double x = (points[i].bpp - first.bpp) / dx;
    const double y = (points[i].loss - last.loss) / dy;
    const double diff = (1.0 - x) - y;
    if (diff > best_diff) best_diff = diff, best = i;
  }
  return best;
}

}  // namespace pq::alloc
