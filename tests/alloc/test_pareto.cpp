// Pareto sweep, Kneedle knee, LO:HI:STEP parsing, reports (JSON, table, SVG), unit members.
#include <doctest/doctest.h>

#include <algorithm>
#include <string>

#include <pq/alloc/pareto.hpp>
#include <pq/alloc/report.hpp>
#include <pq/alloc/svg.hpp>

#include "random_problem.hpp"

using namespace pq::alloc;
using pq::alloc::test::random_problem;
using pq::alloc::test::Rng;

namespace {

Assignment point(double bpp, double loss) {
  Assignment a;
  a.bpp = a.target_bpp = bpp;
  a.bits = static_cast<std::int64_t>(bpp * 1000);
  a.loss = loss;
  return a;
}

bool contains(const std::string& s, const std::string& needle) { return s.find(needle) != std::string::npos; }

}  // namespace

TEST_CASE("LO:HI:STEP parses and expands to an inclusive grid") {
  const BudgetRange r = parse_budget_range("4.25:5:0.25");
  CHECK(r.lo == 4.25);
  CHECK(r.hi == 5.0);
  CHECK(r.step == 0.25);
  CHECK(r.targets() == std::vector<double>{4.25, 4.5, 4.75, 5.0});
  // 0.1 is not exact in binary: the grid still ends at HI and prints cleanly.
  const std::vector<double> t = parse_budget_range("4:5:0.1").targets();
  REQUIRE(t.size() == 11);
  CHECK(t[3] == 4.3);
  CHECK(t.back() == 5.0);
  CHECK(parse_budget_range("6:6:1").targets() == std::vector<double>{6.0});
}

TEST_CASE("bad LO:HI:STEP gets one clear error naming the flag") {
  auto message = [](const char* text) {
    try {
      (void)parse_budget_range(text);
    } catch (const alloc_error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  CHECK(contains(message("4:5"), "--pareto '4:5': expected LO:HI:STEP"));
  CHECK(contains(message("4:x:0.1"), "HI 'x' is not a number"));
  CHECK(contains(message("4:5:0.1:2"), "STEP '0.1:2' is not a number"));
  CHECK(contains(message("4::0.1"), "HI '' is not a number"));
  CHECK(contains(message("5:4:0.1"), "LO must not exceed HI"));
  CHECK(contains(message("4:5:0"), "STEP must be positive"));
  CHECK(contains(message("4:5:-1"), "STEP must be positive"));
  CHECK(contains(message("0:5:1"), "LO must be positive"));
  CHECK(contains(message("4:5:nan"), "STEP 'nan' is not a number"));
  CHECK(contains(message("1:1000:1e-9"), "more than 100000 budgets"));
}

TEST_CASE("sweep: loss never increases with the budget, bits never exceed it") {
  Rng rng(3);
  for (int trial = 0; trial < 40; ++trial) {
    const Problem p = random_problem(rng, 30, 6);
    const Solver s(p);
    std::vector<double> targets;
    for (double t = s.min_bpp(); t < s.max_useful_bpp() + 1.0; t += 0.37) targets.push_back(t);
    const std::vector<Assignment> curve = sweep(s, targets);
    REQUIRE(curve.size() == targets.size());
    for (std::size_t i = 0; i < curve.size(); ++i) {
      CHECK(curve[i].bpp <= targets[i]);
      // Each sweep point is the single-budget optimum (work is shared, results are not).
      CHECK(curve[i].loss == s.solve(targets[i]).loss);
      if (i > 0) CHECK(curve[i].loss <= curve[i - 1].loss);
    }
    const auto front = pareto_front(curve);
    for (std::size_t k = 1; k < front.size(); ++k) {
      CHECK(curve[front[k]].bits > curve[front[k - 1]].bits);
      CHECK(curve[front[k]].loss < curve[front[k - 1]].loss);
    }
  }
}

TEST_CASE("a sweep below the smallest feasible budget is an error") {
  const Problem p{{"A", "B"}, {{"u", 10, {{0, 40, 1.0}, {1, 80, 0.0}}, {}}}};
  const Solver s(p);
  const std::vector<double> targets{3.9, 5.0};
  CHECK_THROWS_AS((void)sweep(s, targets), infeasible_budget);
}

TEST_CASE("Kneedle finds the corner of a convex decreasing curve") {
  // Normalized: x = 0, .25, .5, .75, 1; (1 - x) - y peaks at the sharp corner (5, 2).
  const std::vector<Assignment> curve{point(4, 10), point(5, 2), point(6, 1.5), point(7, 1), point(8, 0.5)};
  CHECK(knee(curve) == std::optional<std::size_t>(1));
  // Order of the input does not matter; the index refers to the input.
  const std::vector<Assignment> shuffled{point(7, 1), point(5, 2), point(8, 0.5), point(4, 10), point(6, 1.5)};
  CHECK(knee(shuffled) == std::optional<std::size_t>(1));
  // A straight line or a concave curve has no point below the chord: no knee.
  CHECK_FALSE(knee(std::vector<Assignment>{point(4, 3), point(5, 2), point(6, 1)}).has_value());
  CHECK_FALSE(knee(std::vector<Assignment>{point(4, 3), point(5, 2.9), point(6, 0)}).has_value());
  CHECK_FALSE(knee(std::vector<Assignment>{point(4, 3), point(5, 2)}).has_value());
  // y = 1/x on x = 1..10: max of (1 - x_n) - y_n is at x = 3 (diff 0.5185 vs 0.5 at x = 2 and 4).
  std::vector<Assignment> hyper;
  for (int x = 1; x <= 10; ++x) hyper.push_back(point(x, 1.0 / x));
  CHECK(knee(hyper) == std::optional<std::size_t>(2));
}

TEST_CASE("every member of a unit gets the unit's format, always one of its candidates") {
  Rng rng(11);
  for (int trial = 0; trial < 30; ++trial) {
    Problem p = random_problem(rng, 12, 6);
    for (Unit& u : p.units)
      for (int m = 0; m < static_cast<int>(rng.uniform(0, 3)); ++m) u.members.push_back(u.name + ".m" + std::to_string(m));
    const Solver s(p);
    for (std::int64_t b = s.min_bits(); b <= s.max_useful_bits(); b += 7) {
      const Assignment a = s.solve_bits(b);
      const auto lf = linear_formats(p, a);
      std::size_t k = 0;
      for (std::size_t i = 0; i < p.units.size(); ++i) {
        const Unit& u = p.units[i];
        const bool allowed = std::any_of(u.options.begin(), u.options.end(), [&](const Option& o) { return o.format == a.format[i]; });
        CHECK(allowed);
        const std::size_t n = std::max<std::size_t>(1, u.members.size());
        for (std::size_t j = 0; j < n; ++j, ++k) {
          REQUIRE(k < lf.size());
          CHECK(lf[k].first == (u.members.empty() ? u.name : u.members[j]));
          CHECK(lf[k].second == a.format[i]);
        }
      }
      CHECK(k == lf.size());
    }
  }
}

TEST_CASE("reports: JSON, table and SVG carry the solution, the curve and the knee") {
  Problem p{{"NVFP4", "MXFP8_E4M3", "BF16"}, {}};
  for (int i = 0; i < 6; ++i)
    p.units.push_back({"layer" + std::to_string(i), 100, {{0, 450, 10.0 * (i + 1)}, {1, 825, 1.0 * (i + 1)}, {2, 1600, 0.0}}, {}});
  p.units.push_back({"lm_head", 100, {{2, 1600, 0.0}}, {}});
  const Solver s(p);
  const std::vector<double> targets = parse_budget_range("6.2:16:0.5").targets();
  const std::vector<Assignment> curve = sweep(s, targets);
  const auto k = knee(curve);
  REQUIRE(k.has_value());
  const Assignment chosen = s.solve(8.0);

  const nlohmann::json one = assignment_json(p, chosen);
  CHECK(one["stored_bits"].get<std::int64_t>() == chosen.bits);
  CHECK(one["bits_per_weight"].get<double>() <= 8.0);
  CHECK(one["units"].size() == p.units.size());
  REQUIRE(one["single_candidate_units"].size() == 1);
  CHECK(one["single_candidate_units"][0]["name"] == "lm_head");
  CHECK(one["single_candidate_units"][0]["format"] == "BF16");
  double share = 0.0;
  for (const auto& [name, v] : one["param_share"].items()) share += v.get<double>();
  CHECK(share == doctest::Approx(1.0));

  const nlohmann::json sw = sweep_json(p, curve, k);
  CHECK(sw["points"].size() == curve.size());
  CHECK(sw["knee"]["index"].get<std::size_t>() == *k);
  CHECK(sw["points"][*k]["pareto"].get<bool>());

  const std::string table = sweep_table(p, curve, k);
  CHECK(std::count(table.begin(), table.end(), '\n') == static_cast<long>(curve.size()) + 2);
  CHECK(contains(table, "NVFP4"));
  CHECK(contains(table, "* knee"));

  pareto_plot plot{"tiny & <model>: NVFP4,BF16", curve, k, {}, 8.0, chosen, 0.0125};
  plot.measured = {{chosen.bpp, 0.0125, measured_kind::candidate, "target"},
                   {curve.front().bpp, 0.05, measured_kind::uniform, "NVFP4"},
                   {chosen.bpp, 0.013, measured_kind::polish, "polish u1", false},
                   {chosen.bpp, 0.0125, measured_kind::polish, "polish u2", true}};
  const std::string svg = pareto_svg(plot);
  CHECK(svg.rfind("<svg ", 0) == 0);
  CHECK(contains(svg, "</svg>"));
  CHECK(contains(svg, "tiny &amp; &lt;model&gt;: NVFP4,BF16"));  // the title, escaped
  CHECK(contains(svg, "<title>knee</title>"));
  CHECK(contains(svg, "<title>shipped</title>"));
  CHECK(contains(svg, "<title>target</title>"));
  CHECK(contains(svg, ">bits per weight<"));
  CHECK(contains(svg, ">predicted loss<"));
  CHECK(contains(svg, ">measured KL (selection windows)<"));
  CHECK(contains(svg, "shipped " + detail::fmt_num("%.3f", chosen.bpp) + ", KL 0.0125"));
  std::size_t marks = 0;
  for (std::size_t at = svg.find("class=\"measured\""); at != std::string::npos; at = svg.find("class=\"measured\"", at + 1)) ++marks;
  CHECK(marks == plot.measured.size());
  CHECK(contains(svg, "fill=\"none\" stroke=\"#e6550d\""));  // the rejected polish trial is hollow
  CHECK(std::count(svg.begin(), svg.end(), '<') == std::count(svg.begin(), svg.end(), '>'));

  // Tick labels stay clear of the axis titles: every left (right) tick label, at about 7 px per character of
  // 12 px sans-serif, ends at least 7 px (half the rotated title's line) from the title's centre line.
  auto tick_labels = [&](const std::string& cls) {
    std::vector<std::pair<double, std::size_t>> out;  // x, characters
    for (std::size_t at = svg.find("class=\"" + cls + "\""); at != std::string::npos; at = svg.find("class=\"" + cls + "\"", at + 1)) {
      const double x = std::stod(svg.substr(svg.find("x=\"", at) + 3));
      const std::size_t open = svg.find('>', at) + 1;
      out.emplace_back(x, svg.find('<', open) - open);
    }
    return out;
  };
  const auto left = tick_labels("ltick"), right = tick_labels("rtick");
  CHECK(left.size() == 5);
  CHECK(right.size() == 5);
  for (const auto& [x, n] : left) CHECK(x - 7.0 * static_cast<double>(std::max<std::size_t>(n, 9)) >= pareto_layout::left_title_x + 7);
  for (const auto& [x, n] : right) CHECK(x + 7.0 * static_cast<double>(std::max<std::size_t>(n, 9)) <= pareto_layout::right_title_x - 7);
}
