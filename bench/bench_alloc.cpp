// bench_alloc: exact allocation on a synthetic 35B-class MoE cost table (40 layers, 256 experts,
// about 31,000 Linears, 6 formats), 100 budgets, under three groupings into decision units.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include <fmt/core.h>

#include <pq/alloc/pareto.hpp>
#include <pq/alloc/solver.hpp>

namespace {

using pq::alloc::Option;
using pq::alloc::Problem;
using pq::alloc::Unit;

struct Linear {
  std::string name;
  std::int64_t rows, cols;
};

struct FormatModel {
  const char* name;
  std::int64_t (*stored_bits)(std::int64_t rows, std::int64_t cols);
  double error;  // relative rounding error energy, a plausible stand-in for the real cost
};

// Exact stored bits of one Linear per format (codes + block scales + tensor scale).
const FormatModel formats[] = {
    {"NVFP4", [](std::int64_t r, std::int64_t c) { return 4 * r * c + 8 * (r * c / 16) + 32; }, 1.0},
    {"MXFP4", [](std::int64_t r, std::int64_t c) { return 4 * r * c + 8 * (r * c / 32); }, 1.7},
    {"INT4_G128", [](std::int64_t r, std::int64_t c) { return 4 * r * c + 16 * (r * c / 128); }, 1.3},
    {"MXFP8_E4M3", [](std::int64_t r, std::int64_t c) { return 8 * r * c + 8 * (r * c / 32); }, 0.02},
    {"FP8_CHANNEL", [](std::int64_t r, std::int64_t c) { return 8 * r * c + 16 * r; }, 0.03},
    {"BF16", [](std::int64_t r, std::int64_t c) { return 16 * r * c; }, 0.0},
};

enum class Grouping { per_layer, per_expert, per_linear };

const char* grouping_name(Grouping g) {
  switch (g) {
    case Grouping::per_layer: return "fused per layer (DESIGN)";
    case Grouping::per_expert: return "one unit per expert";
    case Grouping::per_linear: return "one unit per Linear";
  }
  return "";
}

// Decoder layer of a Qwen3-MoE-like 35B model: hidden 2048, 32 q heads / 4 kv heads of 128,
// 256 routed experts + 1 shared expert of intermediate 512.
std::vector<std::vector<Linear>> layer_groups(int layer, Grouping g) {
  const std::string p = "model.layers." + std::to_string(layer) + ".";
  std::vector<std::vector<Linear>> groups;
  groups.push_back({{p + "self_attn.q_proj", 4096, 2048}, {p + "self_attn.k_proj", 512, 2048},
                    {p + "self_attn.v_proj", 512, 2048}});
  groups.push_back({{p + "self_attn.o_proj", 2048, 4096}});
  groups.push_back({{p + "mlp.shared_expert.gate_proj", 512, 2048}, {p + "mlp.shared_expert.up_proj", 512, 2048}});
  groups.push_back({{p + "mlp.shared_expert.down_proj", 2048, 512}});
  std::vector<Linear> experts;
  for (int e = 0; e < 256; ++e) {
    const std::string q = p + "mlp.experts." + std::to_string(e) + ".";
    std::vector<Linear> one{{q + "gate_proj", 512, 2048}, {q + "up_proj", 512, 2048}, {q + "down_proj", 2048, 512}};
    if (g == Grouping::per_layer) experts.insert(experts.end(), one.begin(), one.end());
    else groups.push_back(std::move(one));
  }
  if (g == Grouping::per_layer) groups.push_back(std::move(experts));
  if (g == Grouping::per_linear) {
    std::vector<std::vector<Linear>> single;
    for (auto& grp : groups)
      for (auto& l : grp) single.push_back({l});
    return single;
  }
  return groups;
}

Problem moe_problem(Grouping g, std::uint64_t seed, std::size_t& linears) {
  std::mt19937_64 rng(seed);
  std::lognormal_distribution<double> sensitivity(0.0, 1.5);
  std::uniform_real_distribution<double> noise(0.9, 1.1);
  Problem prob;
  for (const auto& f : formats) prob.format_names.emplace_back(f.name);
  linears = 0;
  for (int layer = 0; layer < 40; ++layer) {
    for (const auto& grp : layer_groups(layer, g)) {
      Unit u;
      u.name = grp.size() == 1 ? grp.front().name : grp.front().name + "+" + std::to_string(grp.size() - 1);
      const double s = sensitivity(rng) * 1e-12;
      for (const auto& l : grp) {
        u.params += l.rows * l.cols;
        u.members.push_back(l.name);
      }
      linears += grp.size();
      for (int f = 0; f < 6; ++f) {
        std::int64_t bits = 0;
        for (const auto& l : grp) bits += formats[f].stored_bits(l.rows, l.cols);
        const double loss = s * static_cast<double>(u.params) * formats[f].error * noise(rng);
        u.options.push_back({f, bits, loss});
      }
      prob.units.push_back(std::move(u));
    }
  }
  return prob;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main() {
  constexpr int repeats = 3;
  constexpr int budgets = 100;
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  fmt::print("exact allocation, {} budgets evenly from the smallest feasible to the largest useful bpp, "
             "median of {} runs, one core\n\n", budgets, repeats);
  fmt::print("| grouping | Linears | units | formats | prepare ms | 100 budgets ms | total ms | max core units "
             "| max frontier | max slack bpp |\n|---|---|---|---|---|---|---|---|---|---|\n");
  for (const Grouping g : {Grouping::per_layer, Grouping::per_expert, Grouping::per_linear}) {
    std::size_t linears = 0;
    const Problem prob = moe_problem(g, 42, linears);
    std::vector<double> prep_s, sweep_s;
    int max_core = 0;
    std::size_t max_front = 0;
    double max_slack = 0.0;
    for (int r = 0; r < repeats; ++r) {
      Problem copy = prob;
      const auto t0 = std::chrono::steady_clock::now();
      const pq::alloc::Solver solver(std::move(copy));
      prep_s.push_back(seconds_since(t0));
      const double lo = solver.min_bpp(), hi = solver.max_useful_bpp();
      std::vector<double> targets;
      for (int b = 0; b < budgets; ++b) targets.push_back(lo + (hi - lo) * b / (budgets - 1));
      const auto t1 = std::chrono::steady_clock::now();
      const auto curve = pq::alloc::sweep(solver, targets);
      sweep_s.push_back(seconds_since(t1));
      for (const auto& a : curve) {
        max_core = std::max(max_core, a.stats.core_units);
        max_front = std::max(max_front, a.stats.max_frontier);
        max_slack = std::max(max_slack, a.target_bpp - a.bpp);
      }
    }
    std::sort(prep_s.begin(), prep_s.end());
    std::sort(sweep_s.begin(), sweep_s.end());
    const double prep = prep_s[repeats / 2] * 1e3, sw = sweep_s[repeats / 2] * 1e3;
    fmt::print("| {} | {} | {} | 6 | {:.2f} | {:.2f} | {:.2f} | {} | {} | {:.2e} |\n", grouping_name(g), linears,
               prob.units.size(), prep, sw, prep + sw, max_core, max_front, max_slack);
  }
  return 0;
}
