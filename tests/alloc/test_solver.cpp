// Exact multiple-choice knapsack: brute-force optimality, budget edges, determinism, errors.
#include <doctest/doctest.h>

#include <cmath>
#include <string>

#include <pq/alloc/solver.hpp>

#include "random_problem.hpp"

using namespace pq::alloc;
using pq::alloc::test::brute_force;
using pq::alloc::test::random_problem;
using pq::alloc::test::Rng;

namespace {

std::int64_t bits_of(const Problem& p, const Assignment& a) {
  std::int64_t b = 0;
  for (std::size_t i = 0; i < p.units.size(); ++i)
    for (const Option& o : p.units[i].options)
      if (o.format == a.format[i]) b += o.stored_bits;
  return b;
}

double loss_of(const Problem& p, const Assignment& a) {
  double l = 0.0;
  for (std::size_t i = 0; i < p.units.size(); ++i)
    for (const Option& o : p.units[i].options)
      if (o.format == a.format[i]) l += o.loss;
  return l;
}

// Three units with options at 4.5 / 8.25 / 16 bits per weight, 100 weights each.
Problem three_units() {
  Problem p{{"NVFP4", "MXFP8_E4M3", "BF16"}, {}};
  const double sens[] = {1.0, 4.0, 0.5};
  for (int i = 0; i < 3; ++i)
    p.units.push_back({"layer" + std::to_string(i), 100,
                       {{0, 450, 10.0 * sens[i]}, {1, 825, 1.0 * sens[i]}, {2, 1600, 0.0}}, {}});
  return p;
}

}  // namespace

TEST_CASE("optimal against brute force on random small instances") {
  Rng rng(20240517);
  int solved = 0, infeasible = 0, with_core = 0;
  for (int trial = 0; trial < 1500; ++trial) {
    const Problem p = random_problem(rng, 6, 5);
    const Solver s(p);
    std::int64_t min_bits = 0, max_bits = 0;
    for (const Unit& u : p.units) {
      std::int64_t lo = u.options[0].stored_bits, hi = lo;
      for (const Option& o : u.options) lo = std::min(lo, o.stored_bits), hi = std::max(hi, o.stored_bits);
      min_bits += lo;
      max_bits += hi;
    }
    const std::int64_t budget = rng.uniform(std::max<std::int64_t>(1, min_bits - 3), max_bits + 3);
    const auto ref = brute_force(p, budget);
    if (!ref) {
      ++infeasible;
      CHECK_THROWS_AS((void)s.solve_bits(budget), infeasible_budget);
      continue;
    }
    const Assignment a = s.solve_bits(budget);
    ++solved;
    if (a.stats.core_units > 0) ++with_core;
    REQUIRE(a.format.size() == p.units.size());
    CHECK(a.bits == bits_of(p, a));
    CHECK(a.bits <= budget);
    CHECK(a.loss == doctest::Approx(loss_of(p, a)).epsilon(1e-12));
    CHECK(a.loss == doctest::Approx(ref->loss).epsilon(1e-12));
    CHECK(a.lower_bound <= a.loss + 1e-9);
    const bool integer_losses = std::all_of(p.units.begin(), p.units.end(), [](const Unit& u) {
      return std::all_of(u.options.begin(), u.options.end(),
                         [](const Option& o) { return o.loss == std::floor(o.loss); });
    });
    if (integer_losses) CHECK(a.bits == ref->bits);  // exact ties: fewest bits wins
  }
  MESSAGE(solved << " solved, " << infeasible << " infeasible, " << with_core << " needed the core DP");
  CHECK(solved > 1000);
  CHECK(infeasible > 0);
  CHECK(with_core > 100);  // the exact phase really is exercised
}

TEST_CASE("optimal against an exact capacity DP on random medium instances") {
  Rng rng(99);
  int with_core = 0;
  for (int trial = 0; trial < 200; ++trial) {
    const Problem p = random_problem(rng, 40, 6);
    const Solver s(p);
    const std::int64_t budget = rng.uniform(s.min_bits(), s.max_useful_bits() + 3);
    const auto ref = pq::alloc::test::capacity_dp(p, budget);
    REQUIRE(ref);
    const Assignment a = s.solve_bits(budget);
    if (a.stats.core_units > 0) ++with_core;
    CHECK(a.bits <= budget);
    CHECK(a.bits == bits_of(p, a));
    CHECK(a.loss == doctest::Approx(ref->loss).epsilon(1e-12));
  }
  CHECK(with_core > 50);
}

TEST_CASE("budget edges: exactly the minimum, exactly all-BF16, between two options") {
  const Solver s(three_units());
  CHECK(s.min_bits() == 3 * 450);
  CHECK(s.max_useful_bits() == 3 * 1600);

  const Assignment lo = s.solve_bits(3 * 450);
  CHECK(lo.format == std::vector<int>{0, 0, 0});
  CHECK(lo.bits == 1350);
  CHECK_THROWS_AS((void)s.solve_bits(3 * 450 - 1), infeasible_budget);

  // min_bpp() is the exact smallest feasible target: 4.5 here, and it solves.
  CHECK(s.min_bpp() == 4.5);
  CHECK(s.solve(4.5).format == std::vector<int>{0, 0, 0});
  CHECK_THROWS_AS((void)s.solve(std::nextafter(4.5, 0.0)), infeasible_budget);

  const Assignment hi = s.solve(16.0);
  CHECK(hi.format == std::vector<int>{2, 2, 2});
  CHECK(hi.bpp == 16.0);
  CHECK(s.solve(17.0).format == std::vector<int>{2, 2, 2});  // more budget than useful

  // 1350 + 375 = 1725 bits: exactly one unit can take MXFP8; the most sensitive one does.
  CHECK(s.solve_bits(1725).format == std::vector<int>{0, 1, 0});
  CHECK(s.solve_bits(1724).format == std::vector<int>{0, 0, 0});
  // Between two options: 1725 + 374 leaves one bit short of a second upgrade.
  const Assignment mid = s.solve_bits(2099);
  CHECK(mid.format == std::vector<int>{0, 1, 0});
  CHECK(mid.bits == 1725);
  CHECK(s.solve_bits(2100).format == std::vector<int>{1, 1, 0});
}

TEST_CASE("achieved bits per weight never exceed the target") {
  const Solver s(three_units());
  for (double t = 4.5; t <= 16.5; t += 0.01) {
    const Assignment a = s.solve(t);
    CHECK(a.bpp <= t);
    CHECK(a.bits <= a.budget_bits);
  }
}

TEST_CASE("budget_bits is the exact floor of target * params") {
  CHECK(budget_bits(4.75, 1000) == 4750);
  CHECK(budget_bits(4.75, 3) == 14);  // 14.25
  CHECK(budget_bits(0.1, 10) == 1);   // 0.1 is 0.1000000000000000055..., times 10 is just above 1
  CHECK(budget_bits(0.3, 10) == 2);   // 0.3 is 0.29999999999999998889..., times 10 is just below 3
  CHECK(budget_bits(16.0, 35'000'000'000LL) == 560'000'000'000LL);
  CHECK_THROWS_AS((void)budget_bits(-1.0, 10), alloc_error);
  CHECK_THROWS_AS((void)budget_bits(std::nan(""), 10), alloc_error);
}

TEST_CASE("infeasible budget names the smallest feasible one") {
  const Solver s(three_units());
  try {
    (void)s.solve(4.0);
    FAIL("expected infeasible_budget");
  } catch (const infeasible_budget& e) {
    CHECK(e.smallest_feasible_bpp() == 4.5);
    CHECK(std::string(e.what()).find("smallest feasible budget is 4.5 bits/weight") != std::string::npos);
  }
}

TEST_CASE("identical input gives identical output") {
  Rng r1(7), r2(7);
  for (int trial = 0; trial < 50; ++trial) {
    const Problem p1 = random_problem(r1, 8, 6), p2 = random_problem(r2, 8, 6);
    const Solver s1(p1), s2(p2);
    const std::int64_t b = s1.min_bits() + (s1.max_useful_bits() - s1.min_bits()) / 2;
    const Assignment a1 = s1.solve_bits(b), a2 = s2.solve_bits(b);
    CHECK(a1.format == a2.format);
    CHECK(a1.loss == a2.loss);
    CHECK(a1.bits == a2.bits);
  }
}

TEST_CASE("a unit with a single candidate keeps it at every budget and is reported") {
  Problem p = three_units();
  p.units[1].options = {{2, 1600, 0.0}};  // shapes accept nothing but BF16
  const Solver s(p);
  CHECK(s.forced_units() == std::vector<int>{1});
  CHECK(s.min_bits() == 450 + 1600 + 450);
  for (std::int64_t b = s.min_bits(); b <= s.max_useful_bits(); b += 97) CHECK(s.solve_bits(b).format[1] == 2);
}

TEST_CASE("malformed problems are rejected with the unit named") {
  auto expect = [](Problem p, const std::string& needle) {
    try {
      const Solver s(std::move(p));
      FAIL("expected invalid_problem");
    } catch (const invalid_problem& e) {
      CHECK_MESSAGE(std::string(e.what()).find(needle) != std::string::npos, e.what());
    }
  };
  Problem p = three_units();
  p.units[2].options.clear();
  expect(p, "'layer2' has no candidate format");
  p = three_units();
  p.units[0].options[1].format = 7;
  expect(p, "'layer0' names format index 7");
  p = three_units();
  p.units[1].options[0].loss = std::nan("");
  expect(p, "'layer1' format NVFP4 has a non-finite loss");
  p = three_units();
  p.units[2].name = "layer0";
  expect(p, "'layer0' appears twice");
  p = three_units();
  p.units[0].params = 0;
  expect(p, "'layer0' has no parameters");
  expect(Problem{}, "no decision units");
}
