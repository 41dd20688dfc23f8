// pq/alloc/svg.hpp: pareto.svg, what a user decides from, as a small self-contained SVG: the predicted loss of
// the Pareto sweep against bits per weight (left axis), every build measured on real KL (right axis; validation
// candidates, uniform builds, polish trials, each in its own mark), the target budget and the shipped build.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <pq/alloc/pareto.hpp>
#include <pq/alloc/solver.hpp>

namespace pq::alloc {

// A build measured on real KL: a validation candidate of the sweep (target, knee, sweep point), a uniform build
// of the menu, or a polish trial (accepted or not). `label`: the candidate's name or the uniform build's format.
enum class measured_kind { candidate, uniform, polish };
struct measured_point {
  double bpp = 0.0;
  double kl = 0.0;
  measured_kind kind = measured_kind::candidate;
  std::string label;
  bool accepted = true;  // polish: whether the change was kept
};

struct pareto_plot {
  std::string title;
  std::span<const Assignment> curve;      // the predicted sweep
  std::optional<std::size_t> knee;        // indexes `curve`
  std::vector<measured_point> measured;   // right axis
  std::optional<double> target_bpp;       // the budget, a vertical line
  std::optional<Assignment> chosen;       // the shipped build (its predicted point)
  std::optional<double> chosen_kl;        // and its measured KL, where it was measured
};

namespace detail {
inline std::string fmt_num(const char* f, double v) {
  char buf[48];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}
inline std::string xml_text(std::string_view s) {
  std::string out;
  for (const char c : s) {
    if (c == '&') out += "&amp;";
    else if (c == '<') out += "&lt;";
    else if (c == '>') out += "&gt;";
    else if (c == '"') out += "&quot;";
    else out += c;
  }
  return out;
}
struct axis_range {
  double lo = 1e300, hi = -1e300;
  void extend(double v) {
    if (std::isfinite(v)) lo = std::min(lo, v), hi = std::max(hi, v);
  }
  void finish() {  // an empty or flat range still spans something; 4% padding so marks stay off the frame
    if (lo > hi) lo = 0.0, hi = 1.0;
    if (hi - lo <= 0.0) {
      const double d = lo != 0.0 ? std::abs(lo) * 0.1 : 0.5;
      lo -= d, hi += d;
    }
    const double pad = (hi - lo) * 0.04;
    lo -= pad, hi += pad;
  }
};
}  // namespace detail

// The plot's frame. Tick labels are at most 9 characters (%.3g) of about 7 px at 12 px sans-serif, so the
// margins keep them clear of the rotated axis titles (checked in tests/alloc).
struct pareto_layout {
  static constexpr double width = 720, height = 440;
  static constexpr double left = 96, right = 96, top = 64, bottom = 56;
  static constexpr double left_title_x = 18, right_title_x = width - 18;
  static constexpr double tick_gap = 6;
};

inline std::string pareto_svg(const pareto_plot& p) {
  using detail::fmt_num;
  using L = pareto_layout;
  detail::axis_range xr, yl, yr;
  for (const Assignment& a : p.curve) xr.extend(a.bpp), yl.extend(a.loss);
  for (const measured_point& m : p.measured) xr.extend(m.bpp), yr.extend(m.kl);
  if (p.chosen) xr.extend(p.chosen->bpp), yl.extend(p.chosen->loss);
  if (p.chosen_kl) yr.extend(*p.chosen_kl);
  if (p.target_bpp) xr.extend(*p.target_bpp);
  xr.finish(), yl.finish(), yr.finish();
  const double x_end = L::width - L::right, y_end = L::height - L::bottom;
  auto px = [&](double x) { return L::left + (x - xr.lo) / (xr.hi - xr.lo) * (x_end - L::left); };
  auto pyl = [&](double y) { return y_end - (y - yl.lo) / (yl.hi - yl.lo) * (y_end - L::top); };
  auto pyr = [&](double y) { return y_end - (y - yr.lo) / (yr.hi - yr.lo) * (y_end - L::top); };
  auto num = [](double v) { return fmt_num("%.1f", v); };
  const bool has_kl = !p.measured.empty() || p.chosen_kl;
  const std::string blue = "#1f77b4", orange = "#e6550d", green = "#2ca02c", grey = "#555";

  std::string s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + num(L::width) + "\" height=\"" + num(L::height) +
                  "\" viewBox=\"0 0 " + num(L::width) + " " + num(L::height) +
                  "\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  s += "<text x=\"" + num(L::width / 2) + "\" y=\"22\" text-anchor=\"middle\" font-size=\"14\" font-weight=\"bold\">" +
       detail::xml_text(p.title) + "</text>\n";
  // frame, grid and ticks: five per axis
  s += "<g stroke=\"#444\" fill=\"none\"><rect x=\"" + num(L::left) + "\" y=\"" + num(L::top) + "\" width=\"" +
       num(x_end - L::left) + "\" height=\"" + num(y_end - L::top) + "\"/></g>\n";
  for (int k = 0; k <= 4; ++k) {
    const double f = k / 4.0, xv = xr.lo + (xr.hi - xr.lo) * f;
    const double yv = yl.lo + (yl.hi - yl.lo) * f, rv = yr.lo + (yr.hi - yr.lo) * f;
    s += "<line x1=\"" + num(L::left) + "\" x2=\"" + num(x_end) + "\" y1=\"" + num(pyl(yv)) + "\" y2=\"" + num(pyl(yv)) +
         "\" stroke=\"#eee\"/>\n";
    s += "<text class=\"xtick\" x=\"" + num(px(xv)) + "\" y=\"" + num(y_end + 16) + "\" text-anchor=\"middle\">" +
         fmt_num("%.3g", xv) + "</text>\n";
    s += "<text class=\"ltick\" x=\"" + num(L::left - L::tick_gap) + "\" y=\"" + num(pyl(yv) + 4) + "\" text-anchor=\"end\" fill=\"" +
         blue + "\">" + fmt_num("%.3g", yv) + "</text>\n";
    if (has_kl)
      s += "<text class=\"rtick\" x=\"" + num(x_end + L::tick_gap) + "\" y=\"" + num(pyl(yv) + 4) +
           "\" text-anchor=\"start\" fill=\"" + orange + "\">" + fmt_num("%.3g", rv) + "</text>\n";
  }
  const double mid_y = (L::top + y_end) / 2;
  s += "<text x=\"" + num((L::left + x_end) / 2) + "\" y=\"" + num(L::height - 12) + "\" text-anchor=\"middle\">bits per weight</text>\n";
  s += "<text class=\"ltitle\" x=\"" + num(L::left_title_x) + "\" y=\"" + num(mid_y) + "\" text-anchor=\"middle\" fill=\"" + blue +
       "\" transform=\"rotate(-90 " + num(L::left_title_x) + " " + num(mid_y) + ")\">predicted loss</text>\n";
  if (has_kl)
    s += "<text class=\"rtitle\" x=\"" + num(L::right_title_x) + "\" y=\"" + num(mid_y) + "\" text-anchor=\"middle\" fill=\"" +
         orange + "\" transform=\"rotate(90 " + num(L::right_title_x) + " " + num(mid_y) + ")\">measured KL (selection windows)</text>\n";

  if (p.target_bpp) {
    const double x = px(*p.target_bpp);
    s += "<line x1=\"" + num(x) + "\" x2=\"" + num(x) + "\" y1=\"" + num(L::top) + "\" y2=\"" + num(y_end) + "\" stroke=\"" + grey +
         "\" stroke-dasharray=\"5 4\"><title>target</title></line>\n";
    s += "<text x=\"" + num(x - 4) + "\" y=\"" + num(L::top + 14) + "\" text-anchor=\"end\" fill=\"" + grey + "\">target " +
         fmt_num("%.3g", *p.target_bpp) + "</text>\n";
  }
  // the predicted Pareto front as a polyline, every solved budget as a dot
  std::string pts;
  for (const std::size_t i : pareto_front(p.curve)) pts += num(px(p.curve[i].bpp)) + "," + num(pyl(p.curve[i].loss)) + " ";
  if (!pts.empty()) s += "<polyline fill=\"none\" stroke=\"" + blue + "\" stroke-width=\"2\" points=\"" + pts + "\"/>\n";
  for (const Assignment& a : p.curve)
    s += "<circle cx=\"" + num(px(a.bpp)) + "\" cy=\"" + num(pyl(a.loss)) + "\" r=\"2.5\" fill=\"" + blue + "\"/>\n";
  if (p.knee) {
    const Assignment& k = p.curve[*p.knee];
    s += "<circle cx=\"" + num(px(k.bpp)) + "\" cy=\"" + num(pyl(k.loss)) + "\" r=\"7\" fill=\"none\" stroke=\"" + blue +
         "\" stroke-width=\"1.5\"><title>knee</title></circle>\n";
  }
  // measured builds: circle (validation candidate), square (uniform build, labelled), triangle (polish trial)
  for (const measured_point& m : p.measured) {
    const double x = px(m.bpp), y = pyr(m.kl);
    const std::string fill = m.accepted ? orange : "none";
    const std::string tip = "<title>" + detail::xml_text(m.label) + ": " + fmt_num("%.4f", m.bpp) + " bits, KL " +
                            fmt_num("%.4g", m.kl) + "</title>";
    switch (m.kind) {
      case measured_kind::candidate:
        s += "<circle class=\"measured\" cx=\"" + num(x) + "\" cy=\"" + num(y) + "\" r=\"4.5\" fill=\"" + orange + "\">" + tip +
             "</circle>\n";
        break;
      case measured_kind::uniform:
        s += "<rect class=\"measured\" x=\"" + num(x - 4.5) + "\" y=\"" + num(y - 4.5) + "\" width=\"9\" height=\"9\" fill=\"" +
             orange + "\">" + tip + "</rect>\n";
        s += "<text x=\"" + num(x + 7) + "\" y=\"" + num(y - 6) + "\" fill=\"" + orange + "\" font-size=\"11\">" +
             detail::xml_text(m.label) + "</text>\n";
        break;
      case measured_kind::polish:
        s += "<path class=\"measured\" d=\"M" + num(x) + " " + num(y - 5) + " l5 9 l-10 0 z\" fill=\"" + fill + "\" stroke=\"" +
             orange + "\">" + tip + "</path>\n";
        break;
    }
  }
  if (p.chosen) {  // the shipped build: a diamond at its measured KL where it was measured, else at its prediction
    const double cx = px(p.chosen->bpp), cy = p.chosen_kl ? pyr(*p.chosen_kl) : pyl(p.chosen->loss);
    s += "<path d=\"M" + num(cx) + " " + num(cy - 8) + " l7 8 l-7 8 l-7 -8 z\" fill=\"" + green + "\"><title>shipped</title></path>\n";
    s += "<text x=\"" + num(cx + 10) + "\" y=\"" + num(cy + 18) + "\" fill=\"" + green + "\">shipped " +
         fmt_num("%.3f", p.chosen->bpp) + (p.chosen_kl ? ", KL " + fmt_num("%.3g", *p.chosen_kl) : std::string()) + "</text>\n";
  }
  // legend, between the title and the frame
  const double ly = 46;
  s += "<g font-size=\"11\">\n";
  s += "<line x1=\"" + num(L::left) + "\" x2=\"" + num(L::left + 18) + "\" y1=\"" + num(ly - 4) + "\" y2=\"" + num(ly - 4) +
       "\" stroke=\"" + blue + "\" stroke-width=\"2\"/><text x=\"" + num(L::left + 22) + "\" y=\"" + num(ly) + "\">predicted (sweep)</text>\n";
  if (has_kl) {
    const double x0 = L::left + 140;
    s += "<circle cx=\"" + num(x0) + "\" cy=\"" + num(ly - 4) + "\" r=\"4\" fill=\"" + orange + "\"/><text x=\"" + num(x0 + 8) +
         "\" y=\"" + num(ly) + "\">measured candidate</text>\n";
    s += "<rect x=\"" + num(x0 + 130) + "\" y=\"" + num(ly - 8) + "\" width=\"8\" height=\"8\" fill=\"" + orange + "\"/><text x=\"" +
         num(x0 + 142) + "\" y=\"" + num(ly) + "\">uniform build</text>\n";
    s += "<path d=\"M" + num(x0 + 236) + " " + num(ly - 9) + " l5 9 l-10 0 z\" fill=\"" + orange + "\"/><text x=\"" + num(x0 + 246) +
         "\" y=\"" + num(ly) + "\">polish (hollow: rejected)</text>\n";
  }
  s += "</g>\n</svg>\n";
  return s;
}

}  // namespace pq::alloc
