// pq/alloc/problem.hpp: the allocation problem (decision units, their candidate formats), its
// validation, and the exact conversion of a bits-per-weight target into an integer bit budget.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include <pq/error.hpp>

namespace pq::alloc {

// One candidate format of a unit. `format` indexes the caller's list of format names;
// `stored_bits` is everything the checkpoint stores for the whole unit in that format (codes,
// block scales, tensor scales), an exact integer computed by the caller from the format policy;
// `loss` is the predicted loss increase of the whole unit in that format.
struct Option {
  int format = 0;
  std::int64_t stored_bits = 0;
  double loss = 0.0;
};

// A decision unit: Linears that must share one format (fused q/k/v, gate/up, all experts of an
// MoE layer). `params` counts the weights of all members. `members` names the Linears; empty
// means the unit is the single Linear called `name`. Formats whose shape rules reject a member
// are simply not among `options`.
struct Unit {
  std::string name;
  std::int64_t params = 0;
  std::vector<Option> options;
  std::vector<std::string> members;
};

struct Problem {
  std::vector<std::string> format_names;  // index space of Option::format
  std::vector<Unit> units;
};

// Every error of this area derives from this one.
class alloc_error : public pq::error {
 public:
  using pq::error::error;
};

// A problem that is malformed (message names the unit and what is wrong).
class invalid_problem : public alloc_error {
 public:
  using alloc_error::alloc_error;
};

// A budget below what the smallest candidates of all units need.
class infeasible_budget : public alloc_error {
 public:
  infeasible_budget(const std::string& what, double smallest_feasible_bpp)
      : alloc_error(what), smallest_feasible_bpp_(smallest_feasible_bpp) {}
  [[nodiscard]] double smallest_feasible_bpp() const noexcept { return smallest_feasible_bpp_; }

 private:
  double smallest_feasible_bpp_;
};

// Throws invalid_problem on the first defect found, in unit order.
inline void validate(const Problem& p) {
  const auto n_formats = static_cast<int>(p.format_names.size());
  if (p.units.empty()) throw invalid_problem("allocation problem has no decision units");
  std::set<std::string> names;
  for (const Unit& u : p.units) {
    const std::string where = "decision unit '" + u.name + "'";
    if (u.name.empty()) throw invalid_problem("a decision unit has an empty name");
    if (!names.insert(u.name).second) throw invalid_problem(where + " appears twice");
    if (u.params <= 0) throw invalid_problem(where + " has no parameters");
    if (u.options.empty()) throw invalid_problem(where + " has no candidate format");
    std::set<int> seen;
    for (const Option& o : u.options) {
      if (o.format < 0 || o.format >= n_formats)
        throw invalid_problem(where + " names format index " + std::to_string(o.format) +
                              " outside the " + std::to_string(n_formats) + " known formats");
      const std::string fmt = where + " format " + p.format_names[static_cast<std::size_t>(o.format)];
      if (!seen.insert(o.format).second) throw invalid_problem(fmt + " is listed twice");
      if (o.stored_bits <= 0) throw invalid_problem(fmt + " has non-positive stored bits");
      if (!std::isfinite(o.loss)) throw invalid_problem(fmt + " has a non-finite loss");
    }
  }
}

// Sum of `params` over all units, with an overflow check (the budget's denominator).
inline std::int64_t total_params(const Problem& p) {
  std::int64_t total = 0;
  for (const Unit& u : p.units) {
    if (u.params > std::numeric_limits<std::int64_t>::max() / 64 - total)
      throw invalid_problem("parameter count overflows at decision unit '" + u.name + "'");
    total += u.params;
  }
  return total;
}

// The integer bit budget of a target: the largest B with B <= target_bpp * params, computed
// exactly from the binary value of the double (no rounding anywhere), so the achieved bits per
// weight of any solution within B never exceed the target.
inline std::int64_t budget_bits(double target_bpp, std::int64_t params) {
  if (!std::isfinite(target_bpp) || target_bpp <= 0.0 || target_bpp > 1024.0)
    throw alloc_error("bit budget " + std::to_string(target_bpp) +
                      " bits/weight is not a number in (0, 1024]");
  if (params <= 0) throw alloc_error("bit budget over zero parameters");
  __extension__ using u128 = unsigned __int128;
  int exp = 0;
  const double frac = std::frexp(target_bpp, &exp);  // target = frac * 2^exp, frac in [0.5, 1)
  const auto mant = static_cast<std::uint64_t>(std::ldexp(frac, 53));  // exact: 53-bit integer
  const int shift = exp - 53;  // target = mant * 2^shift, shift <= 10 - 53 < 0
  const u128 product = static_cast<u128>(mant) * static_cast<u128>(params);
  const u128 floored = product >> (-shift);
  if (floored > static_cast<u128>(std::numeric_limits<std::int64_t>::max()))
    throw alloc_error("bit budget overflows 64 bits");
  return static_cast<std::int64_t>(floored);
}

// The smallest double t with budget_bits(t, params) >= bits: the exact bpp that admits `bits`.
inline double bpp_admitting(std::int64_t bits, std::int64_t params) {
  double t = static_cast<double>(bits) / static_cast<double>(params);
  for (double lower = std::nextafter(t, 0.0); lower > 0.0 && budget_bits(lower, params) >= bits;
       lower = std::nextafter(t, 0.0))
    t = lower;
  while (budget_bits(t, params) < bits) t = std::nextafter(t, 2048.0);
  return t;
}

}  // namespace pq::alloc
