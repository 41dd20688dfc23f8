// Stage 4 on its own (pipeline/selection.hpp): the selection measures candidates through a callback, so its
// logic is tested here against measures with known answers, without a model.
#include <doctest/doctest.h>

#include <map>
#include <string>
#include <vector>

#include <pq/pipeline/selection.hpp>

using namespace pq;

namespace {
// Six units of 100 weights; NVFP4 4.5, MXFP8 8.25, BF16 16 bits per weight; the surrogate's losses differ per unit.
alloc::Problem six_units() {
  alloc::Problem p{{"NVFP4", "MXFP8_E4M3", "BF16"}, {}};
  const double sens[] = {1.0, 4.0, 0.5, 2.0, 0.25, 3.0};
  for (int i = 0; i < 6; ++i)
    p.units.push_back({"layer" + std::to_string(i), 100, {{0, 450, 10.0 * sens[i]}, {1, 825, 1.0 * sens[i]}, {2, 1600, 0.0}}, {}});
  return p;
}

// A measure that counts its calls per assignment.
struct counting_measure {
  std::function<double(const std::vector<int>&)> kl;
  std::map<std::vector<int>, int> calls;
  pipeline::measure_fn fn() {
    return [this](const std::vector<int>& a) {
      ++calls[a];
      return kl(a);
    };
  }
};

void check_log_within_budget(const pipeline::selection& s, double target_bits) {
  for (const auto& m : s.measurements()) {
    CAPTURE(m.dump());
    CHECK(m["bpp"].get<double>() <= target_bits + 1e-12);
  }
}
}  // namespace

TEST_CASE("selection: when measurement agrees with the surrogate, the exact knapsack's solution ships") {
  const auto p = six_units();
  pipeline::selection s(p, {6.0, "", 12});
  s.allocate();
  counting_measure m{[&](const std::vector<int>& a) { return s.loss_of(a); }, {}};
  s.validate(m.fn());
  CHECK(s.chosen() == s.target().format);
  for (const auto& e : s.measurements()) CHECK_FALSE(e.value("accepted", false));  // polish finds nothing better
  for (const auto& [a, n] : m.calls) CHECK(n == 1);                                 // each assignment measured once
  check_log_within_budget(s, 6.0);
  CHECK(s.bits_of(s.chosen()) <= s.budget_bits());
}

TEST_CASE("selection: a uniform build that measures best ships, even against the surrogate") {
  const auto p = six_units();
  pipeline::selection s(p, {9.0, "", 12});
  s.allocate();
  const std::vector<int> mxfp8(6, 1);
  REQUIRE(s.target().format != mxfp8);  // the surrogate prefers a mix at 9 bits
  counting_measure m{[&](const std::vector<int>& a) { return a == mxfp8 ? 0.01 : 1.0 + s.loss_of(a); }, {}};
  s.validate(m.fn());
  CHECK(s.chosen() == mxfp8);
  CHECK(m.calls.count(mxfp8) == 1);
  // uniform BF16 does not fit 9 bits and is never measured
  CHECK(m.calls.count(std::vector<int>(6, 2)) == 0);
  check_log_within_budget(s, 9.0);
}

TEST_CASE("selection: polish accepts a measured single-unit change the surrogate underrates, within the budget") {
  const auto p = six_units();
  pipeline::selection s(p, {6.0, "", 32});
  s.allocate();
  const std::vector<int> target = s.target().format;
  // Find a unit the surrogate leaves in NVFP4; the measure says that unit in NVFP4 costs far more.
  std::size_t hurt = target.size();
  for (std::size_t u = 0; u < target.size(); ++u)
    if (target[u] == 0) hurt = u;
  REQUIRE(hurt < target.size());
  const auto kl = [&](const std::vector<int>& a) { return s.loss_of(a) + (a[hurt] == 0 ? 1000.0 : 0.0); };
  counting_measure m{kl, {}};
  s.validate(m.fn());
  CHECK(s.chosen()[hurt] != 0);
  CHECK(kl(s.chosen()) < kl(target));
  CHECK(s.bits_of(s.chosen()) <= s.budget_bits());
  // the log says which step found it, and the shipped assignment is the best the log measured
  double best = INFINITY;
  for (const auto& e : s.measurements()) best = std::min(best, e["kl_selection"].get<double>());
  CHECK(kl(s.chosen()) == best);
  bool accepted = false;
  for (const auto& e : s.measurements()) accepted = accepted || e.value("accepted", false);
  CHECK(accepted);
  check_log_within_budget(s, 6.0);
}

TEST_CASE("selection: candidate_count bounds the measurements before polish") {
  const auto p = six_units();
  pipeline::selection s(p, {6.0, "", 0});
  s.allocate();
  counting_measure m{[&](const std::vector<int>& a) { return s.loss_of(a); }, {}};
  int progress = 0;
  s.validate(m.fn(), [&] { ++progress; });
  CHECK(progress == static_cast<int>(m.calls.size()));
  CHECK(m.calls.size() <= s.candidate_count());
  CHECK(s.measurements().size() >= m.calls.size());  // repeated proposals are logged, not measured again
}
