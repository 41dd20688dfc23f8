// pq/pipeline/selection.hpp: stages 3 and 4 of `pq quantize`: allocation over a Pareto sweep of the cost
// table's knapsack, then selection on measured KL. Surrogate costs only propose candidates (the target, the
// knee, the sweep points just below the target, and every uniform build of the menu that fits the budget);
// each is measured, the best ships, and polish tries measured single-unit changes on top of it.
//
// The measurement is a callback, so the selection logic runs (and is tested) without a model: the
// pipeline passes the KL of the stored roundings on the selection windows (evaluation.hpp).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include <pq/alloc/pareto.hpp>
#include <pq/alloc/solver.hpp>
#include <pq/alloc/svg.hpp>
#include <pq/pipeline/options.hpp>

namespace pq::pipeline {

// Measured loss (KL) of an assignment: one format index per unit of the problem.
using measure_fn = std::function<double(const std::vector<int>& unit_formats)>;

struct selection_options {
  double target_bits = 4.75;
  std::string pareto;     // LO:HI:STEP, empty: every 1/8 bit of the feasible range up to 16
  int polish_trials = 12;
};

class selection {
 public:
  selection(const alloc::Problem& problem, selection_options o) : problem_(&problem), o_(std::move(o)), solver_(problem) {}

  // Stage 3: the Pareto sweep, its knee and the solution at the target. Before validate(), this is what ships.
  void allocate() {
    std::vector<double> targets;
    if (!o_.pareto.empty()) {
      targets = alloc::parse_budget_range(o_.pareto).targets();
    } else {
      for (double b = std::ceil(solver_.min_bpp() * 8.0) / 8.0; b <= std::min(16.0, solver_.max_useful_bpp() + 0.125); b += 0.125)
        targets.push_back(b);
    }
    std::erase_if(targets, [&](double t) { return t < solver_.min_bpp(); });
    curve_ = alloc::sweep(solver_, targets);
    knee_ = alloc::knee(curve_);
    target_ = solver_.solve(o_.target_bits);
    chosen_ = target_.format;
  }

  // Stage 4: every candidate measured once; the best ships, then polish. `on_measure` is called after each
  // measurement (progress).
  void validate(const measure_fn& measure, const std::function<void()>& on_measure = {}) {
    const std::int64_t budget = budget_bits();
    double best = INFINITY;
    std::map<std::vector<int>, double> measured;  // an assignment proposed twice is measured once
    auto try_candidate = [&](const std::string& why, const std::vector<int>& a, nlohmann::json entry) {
      auto it = measured.find(a);
      if (it == measured.end()) {
        it = measured.emplace(a, measure(a)).first;
        if (on_measure) on_measure();
      }
      entry["candidate"] = why;
      entry["bpp"] = bpp_of(a);
      entry["predicted"] = loss_of(a);
      entry["kl_selection"] = it->second;
      log_.push_back(std::move(entry));
      if (it->second < best) {
        best = it->second;
        chosen_ = a;
        chosen_kl_ = best;
      }
      return it->second;
    };
    for (const auto& [why, a] : candidates(budget)) {
      const double kl = try_candidate(why.first, a->format, why.second);
      kl_at_[a->bpp] = kl;
    }
    for (std::size_t fi = 0; fi < problem_->format_names.size(); ++fi)
      if (const auto u = uniform(static_cast<int>(fi)); u && bits_of(*u) <= budget)
        try_candidate("uniform", *u, {{"format", problem_->format_names[fi]}});
    polish(budget, best, measure, on_measure);
  }

  // Candidates validate() measures before polish (for progress totals): at most 4 + one per format.
  std::size_t candidate_count() const { return candidates(budget_bits()).size() + problem_->format_names.size(); }

  const alloc::Solver& solver() const { return solver_; }
  const std::vector<alloc::Assignment>& curve() const { return curve_; }
  const std::optional<std::size_t>& knee() const { return knee_; }
  const alloc::Assignment& target() const { return target_; }
  const std::vector<int>& chosen() const { return chosen_; }
  const std::optional<double>& chosen_kl() const { return chosen_kl_; }  // on the selection windows, once validated
  const nlohmann::json& measurements() const { return log_; }  // report.json "validation"

  // pareto.svg: the sweep, every measurement of validate() and the shipped build.
  alloc::pareto_plot plot(std::string title) const {
    alloc::pareto_plot p{std::move(title), curve_, knee_, {}, o_.target_bits, alloc::Assignment{}, chosen_kl_};
    for (const auto& m : log_) {
      const std::string why = m.at("candidate");
      alloc::measured_point pt{m.at("bpp"), m.at("kl_selection"), alloc::measured_kind::candidate, why};
      if (why == "uniform") pt.kind = alloc::measured_kind::uniform, pt.label = m.at("format");
      if (why == "polish") pt.kind = alloc::measured_kind::polish, pt.accepted = m.at("accepted"), pt.label = "polish " + std::string(m.at("unit"));
      p.measured.push_back(std::move(pt));
    }
    p.chosen->format = chosen_;
    p.chosen->bits = bits_of(chosen_);
    p.chosen->bpp = bpp_of(chosen_);
    p.chosen->loss = loss_of(chosen_);
    return p;
  }
  const std::map<double, double>& kl_at() const { return kl_at_; }  // measured KL by the bpp of a curve point

  std::int64_t budget_bits() const { return alloc::budget_bits(o_.target_bits, solver_.params()); }
  std::int64_t bits_of(const std::vector<int>& unit_formats) const {
    std::int64_t b = 0;
    for (std::size_t ui = 0; ui < unit_formats.size(); ++ui) b += option_of(ui, unit_formats[ui]).stored_bits;
    return b;
  }
  double bpp_of(const std::vector<int>& unit_formats) const {
    return static_cast<double>(bits_of(unit_formats)) / static_cast<double>(solver_.params());
  }
  double loss_of(const std::vector<int>& unit_formats) const {
    double l = 0;
    for (std::size_t ui = 0; ui < unit_formats.size(); ++ui) l += option_of(ui, unit_formats[ui]).loss;
    return l;
  }
  const alloc::Option& option_of(std::size_t unit, int format) const {
    for (const auto& o : problem_->units.at(unit).options)
      if (o.format == format) return o;
    throw pipeline_error("internal: unit " + problem_->units.at(unit).name + " has no option for format " +
                         std::to_string(format));
  }

 private:
  using candidate = std::pair<std::pair<std::string, nlohmann::json>, const alloc::Assignment*>;

  std::vector<candidate> candidates(std::int64_t budget) const {
    std::vector<candidate> c{{{"target", nlohmann::json::object()}, &target_}};
    if (knee_ && curve_[*knee_].bits <= budget) c.push_back({{"knee", nlohmann::json::object()}, &curve_[*knee_]});
    for (const auto& a : curve_)  // the sweep points within 1/4 bit below the target
      if (a.bits <= budget && a.target_bpp < o_.target_bits && a.target_bpp >= o_.target_bits - 0.25)
        c.push_back({{"sweep", nlohmann::json::object()}, &a});
    return c;
  }

  // Every unit in format fi, when every unit accepts it.
  std::optional<std::vector<int>> uniform(int fi) const {
    std::vector<int> a;
    for (const auto& u : problem_->units) {
      if (std::none_of(u.options.begin(), u.options.end(), [&](const alloc::Option& o) { return o.format == fi; }))
        return std::nullopt;
      a.push_back(fi);
    }
    return a;
  }

  // Single decision-unit changes, proposed by the surrogate (largest predicted gain per bit first) and
  // accepted only when measured KL improves and the budget holds. A change that does not fit the
  // leftover bits is paid for by the cheapest predicted downgrade of another unit.
  void polish(std::int64_t budget, double& best, const measure_fn& measure, const std::function<void()>& on_measure) {
    struct move {
      double gain;
      std::size_t unit;
      int to;
    };
    const auto& units = problem_->units;
    std::vector<move> moves;
    for (std::size_t ui = 0; ui < units.size(); ++ui) {
      const alloc::Option& cur = option_of(ui, chosen_[ui]);
      for (const auto& opt : units[ui].options)
        if (opt.stored_bits > cur.stored_bits && opt.loss < cur.loss)
          moves.push_back({(cur.loss - opt.loss) / static_cast<double>(opt.stored_bits - cur.stored_bits), ui, opt.format});
    }
    std::sort(moves.begin(), moves.end(), [](const move& a, const move& b) { return a.gain > b.gain; });
    int tried = 0;
    for (const move& mv : moves) {
      if (tried >= o_.polish_trials) break;
      std::vector<int> cand = chosen_;
      cand[mv.unit] = mv.to;
      const std::int64_t over = bits_of(cand) - budget;
      if (over > 0) {  // pay for it with the downgrade of another unit that costs the least predicted loss
        double best_cost = INFINITY;
        std::pair<std::size_t, int> pay{0, -1};
        for (std::size_t vi = 0; vi < units.size(); ++vi) {
          if (vi == mv.unit) continue;
          const alloc::Option& cur = option_of(vi, cand[vi]);
          for (const auto& opt : units[vi].options)
            if (cur.stored_bits - opt.stored_bits >= over && opt.loss - cur.loss < best_cost) {
              best_cost = opt.loss - cur.loss;
              pay = {vi, opt.format};
            }
        }
        if (pay.second < 0) continue;
        cand[pay.first] = pay.second;
      }
      if (bits_of(cand) > budget) continue;
      ++tried;
      const double kl = measure(cand);
      if (on_measure) on_measure();
      const bool accept = kl < best;
      log_.push_back({{"candidate", "polish"}, {"unit", units[mv.unit].name},
                      {"to", problem_->format_names[static_cast<std::size_t>(mv.to)]}, {"bpp", bpp_of(cand)},
                      {"predicted", loss_of(cand)}, {"kl_selection", kl}, {"accepted", accept}});
      if (accept) {
        best = kl;
        chosen_ = cand;
        chosen_kl_ = best;
      }
    }
  }

  const alloc::Problem* problem_;
  selection_options o_;
  alloc::Solver solver_;
  std::vector<alloc::Assignment> curve_;
  std::optional<std::size_t> knee_;
  alloc::Assignment target_;
  std::vector<int> chosen_;
  std::optional<double> chosen_kl_;
  nlohmann::json log_ = nlohmann::json::array();
  std::map<double, double> kl_at_;
};

}  // namespace pq::pipeline
