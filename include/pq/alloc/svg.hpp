// pq/alloc/svg.hpp: a small self-contained SVG plot of predicted loss against bits per weight,
// with the Pareto curve, the knee and the chosen point marked.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <optional>
#include <span>
#include <string>

#include <pq/alloc/pareto.hpp>
#include <pq/alloc/solver.hpp>

namespace pq::alloc {

namespace detail {
inline std::string fmt_num(const char* f, double v) {
  char buf[48];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}
}  // namespace detail

// `knee_index` indexes `curve`; `chosen` is drawn as a separate marker (it need not be in `curve`).
inline std::string pareto_svg(std::span<const Assignment> curve, std::optional<std::size_t> knee_index,
                              const Assignment* chosen = nullptr) {
  constexpr double W = 640, H = 400, L = 70, R = 20, T = 30, B = 50;
  double x0 = 1e300, x1 = -1e300, y0 = 1e300, y1 = -1e300;
  auto extend = [&](const Assignment& a) {
    x0 = std::min(x0, a.bpp), x1 = std::max(x1, a.bpp), y0 = std::min(y0, a.loss), y1 = std::max(y1, a.loss);
  };
  for (const Assignment& a : curve) extend(a);
  if (chosen) extend(*chosen);
  if (curve.empty() && !chosen) x0 = y0 = 0.0, x1 = y1 = 1.0;
  if (x1 - x0 <= 0.0) x0 -= 0.5, x1 += 0.5;
  if (y1 - y0 <= 0.0) y0 -= 0.5, y1 += 0.5;
  auto px = [&](double x) { return L + (x - x0) / (x1 - x0) * (W - L - R); };
  auto py = [&](double y) { return H - B - (y - y0) / (y1 - y0) * (H - T - B); };
  using detail::fmt_num;
  std::string s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"640\" height=\"400\" viewBox=\"0 0 640 400\" "
                  "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"640\" height=\"400\" fill=\"white\"/>\n";
  // Axes with five ticks each.
  s += "<g stroke=\"#444\">\n<line x1=\"70\" y1=\"350\" x2=\"620\" y2=\"350\"/>\n<line x1=\"70\" y1=\"30\" x2=\"70\" y2=\"350\"/>\n</g>\n";
  for (int k = 0; k <= 4; ++k) {
    const double xv = x0 + (x1 - x0) * k / 4.0, yv = y0 + (y1 - y0) * k / 4.0;
    s += "<text x=\"" + fmt_num("%.1f", px(xv)) + "\" y=\"366\" text-anchor=\"middle\">" + fmt_num("%.3g", xv) + "</text>\n";
    s += "<text x=\"64\" y=\"" + fmt_num("%.1f", py(yv) + 4) + "\" text-anchor=\"end\">" + fmt_num("%.3g", yv) + "</text>\n";
    s += "<line x1=\"70\" x2=\"620\" y1=\"" + fmt_num("%.1f", py(yv)) + "\" y2=\"" + fmt_num("%.1f", py(yv)) +
         "\" stroke=\"#eee\"/>\n";
  }
  s += "<text x=\"345\" y=\"392\" text-anchor=\"middle\">bits per weight</text>\n";
  s += "<text x=\"16\" y=\"190\" text-anchor=\"middle\" transform=\"rotate(-90 16 190)\">predicted loss</text>\n";
  // Pareto curve as a step-free polyline through the front, every solved budget as a dot.
  std::string pts;
  for (const std::size_t i : pareto_front(curve))
    pts += fmt_num("%.1f", px(curve[i].bpp)) + "," + fmt_num("%.1f", py(curve[i].loss)) + " ";
  if (!pts.empty()) s += "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"2\" points=\"" + pts + "\"/>\n";
  for (const Assignment& a : curve)
    s += "<circle cx=\"" + fmt_num("%.1f", px(a.bpp)) + "\" cy=\"" + fmt_num("%.1f", py(a.loss)) +
         "\" r=\"2.5\" fill=\"#1f77b4\"/>\n";
  if (knee_index) {
    const Assignment& k = curve[*knee_index];
    s += "<circle cx=\"" + fmt_num("%.1f", px(k.bpp)) + "\" cy=\"" + fmt_num("%.1f", py(k.loss)) +
         "\" r=\"7\" fill=\"none\" stroke=\"#d62728\" stroke-width=\"2\"><title>knee</title></circle>\n";
    s += "<text x=\"" + fmt_num("%.1f", px(k.bpp) + 10) + "\" y=\"" + fmt_num("%.1f", py(k.loss) - 10) +
         "\" fill=\"#d62728\">knee " + fmt_num("%.3f", k.bpp) + "</text>\n";
  }
  if (chosen) {
    const double cx = px(chosen->bpp), cy = py(chosen->loss);
    s += "<path d=\"M" + fmt_num("%.1f", cx) + " " + fmt_num("%.1f", cy - 8) + " l7 8 l-7 8 l-7 -8 z\" fill=\"#2ca02c\">"
         "<title>chosen</title></path>\n";
    s += "<text x=\"" + fmt_num("%.1f", cx + 10) + "\" y=\"" + fmt_num("%.1f", cy + 18) + "\" fill=\"#2ca02c\">chosen " +
         fmt_num("%.3f", chosen->bpp) + "</text>\n";
  }
  s += "</svg>\n";
  return s;
}

}  // namespace pq::alloc
