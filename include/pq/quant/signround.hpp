// pq/quant/signround.hpp: SignRound (AutoRound's rounding, Cheng et al. 2023) for any Format: learnable rounding
// offsets V per weight and per-group multipliers of the group's min and max, the rounding
// code = F::quantize(w + V·s, p(α·lo, β·hi)) (that is round(w/s + V) in the format's element domain, through
// the format's own scale rule and scale codec), gradients by the straight-through estimator, sign-SGD steps.
// This header owns one Linear's learnable state; the block-output loss that drives it lives in
// pipeline/signround_block.hpp.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include <pq/formats/format.hpp>
#include <pq/formats/quantized.hpp>
#include <pq/quant/error.hpp>
#include <pq/quant/rtn.hpp>

namespace pq {

// AutoRound's recipe (auto_round 0.16.1, SignRoundConfig): lr = 1/iters, decayed linearly to 0 (LinearLR);
// min/max multipliers start at 1 and are clamped to [0, 1]; batches of 8 calibration sequences; the iterate
// with the lowest batch loss is kept. Recipes: light 50, default 200, best 1000 iterations.
struct signround_options {
  int iters = 200;
  float lr = 0.0f;          // 0: 1/iters
  float minmax_lr = 0.0f;   // 0: lr
  bool tune_minmax = true;  // AutoRound's enable_minmax_tuning
  float minmax_lo = 0.0f;   // clamp of the multipliers (AutoRound: minmax_scale_bound (0, 1))
  float minmax_hi = 1.0f;
  int batch = 8;            // calibration sequences per iteration
  std::uint64_t seed = 42;  // of the batch sampler
};

// The learning rate of iteration i (0-based): base · (1 − i/iters), base = 1/iters unless given.
inline float signround_lr(const signround_options& o, int i, bool minmax) {
  const float base = minmax && o.minmax_lr > 0 ? o.minmax_lr : o.lr > 0 ? o.lr : 1.0f / static_cast<float>(std::max(1, o.iters));
  return base * (1.0f - static_cast<float>(i) / static_cast<float>(std::max(1, o.iters)));
}

namespace detail {
// The element codec's value range and the half steps beyond it that still round onto it: an element whose
// u = w/s + V + zero lies outside [lo − half_lo, hi + half_hi] is clamped (no STE gradient through u).
struct element_bounds {
  float lo, hi, half_lo, half_hi;
};
template <class E>
element_bounds element_bounds_of() {
  float v1 = -INFINITY, v2 = -INFINITY, w1 = INFINITY, w2 = INFINITY;  // two largest, two smallest
  for (std::uint32_t c = 0; c < E::code_count; ++c) {
    const float x = E::decode(c);
    if (!std::isfinite(x)) continue;
    if (x > v1) { v2 = v1; v1 = x; } else if (x > v2 && x < v1) v2 = x;
    if (x < w1) { w2 = w1; w1 = x; } else if (x < w2 && x > w1) w2 = x;
  }
  return {w1, v1, (w2 - w1) / 2, (v1 - v2) / 2};
}

// Bisection between `yes` (pred true) and `no` (pred false) over at most `steps` halvings: the last point
// found on the `yes` side, as close to `no` as float resolution and `steps` allow.
template <class Pred>
float bisect(float yes, float no, int steps, Pred&& pred) {
  for (int k = 0; k < steps && yes != no; ++k) {
    const float mid = yes + (no - yes) / 2;
    if (mid == yes || mid == no) break;
    (pred(mid) ? yes : no) = mid;
  }
  return yes;
}
}  // namespace detail

// One Linear's SignRound state in format F. The source weights are referenced, not copied.
template <Format F>
class signround_state {
 public:
  static constexpr bool trainable = requires { typename F::scale_codec; };

  signround_state(std::span<const float> w, index_t rows, index_t cols, float tensor_scale)
      : w_(w), rows_(rows), cols_(cols), gw_(group_width<F>(cols)), gpr_(groups_per_row<F>(cols)),
        ts_(F::has_tensor_scale ? tensor_scale : 1.0f) {
    require_accepts<F>(rows, cols);
    if (static_cast<index_t>(w.size()) != rows * cols) throw quant_error("signround: weight size does not match its shape");
    range_.resize(static_cast<std::size_t>(rows * gpr_));
    for (index_t r = 0; r < rows; ++r)
      for (index_t g = 0; g < gpr_; ++g) range_[static_cast<std::size_t>(r * gpr_ + g)] = range_of(w.data() + r * cols + g * gw_, gw_);
    v_.assign(w.size(), 0.0f);
    min_scale_.assign(range_.size(), 1.0f);
    max_scale_.assign(range_.size(), 1.0f);
    upper_.assign(range_.size(), -INFINITY);  // no raised bound: signround_options::minmax_hi
  }

  index_t rows() const { return rows_; }
  index_t cols() const { return cols_; }
  std::span<const float> v() const { return v_; }
  std::span<const float> min_scale() const { return min_scale_; }
  std::span<const float> max_scale() const { return max_scale_; }
  std::span<float> v() { return v_; }
  std::span<float> min_scale() { return min_scale_; }
  std::span<float> max_scale() { return max_scale_; }

  // Group g's parameters at the current multipliers: the format's scale rule on (α·lo, β·hi).
  qparams params(std::size_t g) const {
    const value_range vr = range_[g];
    return F::group_params(min_scale_[g] * vr.lo, max_scale_[g] * vr.hi, ts_);
  }

  // Starts from another rounding of the same weights (GPTQ's) so that the state rounds exactly as it does.
  // Scales: both multipliers of each group are set to the middle of the interval of multipliers at which the
  // format's rule and scale codec give that rounding's scale (found by bisection; the rule is monotone in the
  // multiplier), the multipliers' upper bound raised to it where it exceeds the bound. Offsets: GPTQ moves a
  // weight by its error feedback, often by more than half a step, so V ∈ [−½, ½] about the source weight could
  // not reach its code. The rounding base becomes the source weight moved, where it must be, to the nearest
  // point of that code's rounding interval (bisection between the weight and the code's value); V starts at 0
  // and SignRound then trains within a step of the start. Asymmetric formats: one multiplier of min and max keeps
  // the source range's zero point, so where the start's differs each weight starts at the code nearest its value.
  void start_from(const quantized_matrix<F>& start) {
    if (start.rows != rows_ || start.cols != cols_) throw quant_error("signround: start rounding does not match the weights");
    if constexpr (trainable) {
      const std::vector<float> t = dequantize(start);
      base_.assign(w_.begin(), w_.end());
      for (index_t r = 0; r < rows_; ++r)
        for (index_t g = 0; g < gpr_; ++g) {
          const std::size_t gi = static_cast<std::size_t>(r * gpr_ + g);
          if (const float m = multiplier_for(gi, start.params[gi].scale); m > 0) {
            min_scale_[gi] = max_scale_[gi] = m;
            upper_[gi] = std::max(upper_[gi], m);
          }
          const qparams p = params(gi);
          for (index_t c = g * gw_; c < (g + 1) * gw_; ++c) {
            const std::size_t i = static_cast<std::size_t>(r * cols_ + c);
            v_[i] = 0.0f;
            const std::uint32_t code = F::quantize(t[i], p);  // start's code where p is its parameters
            if (F::quantize(w_[i], p) == code) continue;
            base_[i] = detail::bisect(F::dequantize(code, p), w_[i], 48,
                                      [&](float x) { return F::quantize(x, p) == code; });
          }
        }
      w_ = base_;
    }
  }

  // The rounding at the current state, as it would ship.
  quantized_matrix<F> rounded() const {
    if constexpr (!trainable) {
      return quantize_rtn<F>(w_, rows_, cols_, ts_);
    } else {
      quantized_matrix<F> q{rows_, cols_, {}, {}, ts_};
      q.codes.resize(w_.size());
      q.params.resize(range_.size());
      for (index_t r = 0; r < rows_; ++r)
        for (index_t g = 0; g < gpr_; ++g) {
          const std::size_t gi = static_cast<std::size_t>(r * gpr_ + g);
          const qparams p = params(gi);
          q.params[gi] = p;
          for (index_t c = g * gw_; c < (g + 1) * gw_; ++c) {
            const std::size_t i = static_cast<std::size_t>(r * cols_ + c);
            q.codes[i] = static_cast<typename F::code_type>(F::quantize(w_[i] + v_[i] * p.scale, p));
          }
        }
      return q;
    }
  }

  // dL/d(V, min multiplier, max multiplier) given G = dL/dŴ (row-major [rows, cols]), by the straight-through
  // estimator: ŵ = s·(q − z), q = round(u), u = w/s + V + z, dq/du = 1 while u rounds inside the codec's range.
  // The scale follows the multipliers through the format's rule with the codec taken as exact (s ∝ its
  // range: amax for symmetric formats, max − min for asymmetric ones); the zero point z = qmin − lo'/s.
  void gradients(std::span<const float> G, std::vector<float>& gv, std::vector<float>& gmin, std::vector<float>& gmax) const {
    gv.assign(v_.size(), 0.0f);
    gmin.assign(range_.size(), 0.0f);
    gmax.assign(range_.size(), 0.0f);
    if constexpr (trainable) {
      static const detail::element_bounds eb = detail::element_bounds_of<typename F::element>();
      for (index_t r = 0; r < rows_; ++r)
        for (index_t g = 0; g < gpr_; ++g) {
          const std::size_t gi = static_cast<std::size_t>(r * gpr_ + g);
          const qparams p = params(gi);
          const float s = p.scale, z = static_cast<float>(p.zero);
          double ds = 0.0, dz = 0.0;  // dL/ds, dL/dz of the group
          for (index_t c = g * gw_; c < (g + 1) * gw_; ++c) {
            const std::size_t i = static_cast<std::size_t>(r * cols_ + c);
            const float u = w_[i] / s + v_[i] + z;
            const std::uint32_t code = F::quantize(w_[i] + v_[i] * s, p);
            const float q = F::dequantize(code, p) / s + z;  // the element value
            const bool inside = u >= eb.lo - eb.half_lo && u <= eb.hi + eb.half_hi;
            if (inside) {
              gv[i] = G[i] * s;
              ds += static_cast<double>(G[i]) * ((q - z) - w_[i] / s);
            } else {
              ds += static_cast<double>(G[i]) * (q - z);
              dz += static_cast<double>(G[i]) * -s;
            }
          }
          const value_range vr = range_[gi];
          const float lo = min_scale_[gi] * vr.lo, hi = max_scale_[gi] * vr.hi;
          double ds_dlo = 0, ds_dhi = 0, dz_dlo = 0;
          if constexpr (F::asymmetric) {
            const float mn = std::min(lo, 0.0f), mx = std::max(hi, 0.0f);
            if (mx - mn > 0) {
              const double k = s / (mx - mn);
              ds_dhi = hi > 0 ? k : 0.0;
              ds_dlo = lo < 0 ? -k : 0.0;
              // z = qmin − mn/s: dz/dlo' = −1/s (direct) + (mn/s²)·ds/dlo'; dz/dhi' = (mn/s²)·ds/dhi'
              const double zs = static_cast<double>(mn) / (static_cast<double>(s) * s);
              dz_dlo = (lo < 0 ? -1.0 / s : 0.0) + zs * ds_dlo;
              const double dL_dlo = ds * ds_dlo + dz * dz_dlo, dL_dhi = ds * ds_dhi + dz * zs * ds_dhi;
              gmin[gi] = static_cast<float>(dL_dlo * vr.lo);
              gmax[gi] = static_cast<float>(dL_dhi * vr.hi);
            }
          } else {
            const float amax = std::max(std::abs(lo), std::abs(hi));
            if (amax > 0) {
              const double k = s / amax;
              if (std::abs(hi) >= std::abs(lo)) ds_dhi = hi >= 0 ? k : -k;
              else ds_dlo = lo >= 0 ? k : -k;
              gmin[gi] = static_cast<float>(ds * ds_dlo * vr.lo);
              gmax[gi] = static_cast<float>(ds * ds_dhi * vr.hi);
            }
          }
        }
    }
  }

  // One sign-SGD step (θ −= lr·sign(∂L/∂θ)); the multipliers are kept in [minmax_lo, minmax_hi].
  void step(std::span<const float> G, float lr, float minmax_lr, const signround_options& o) {
    if constexpr (trainable) {
      gradients(G, gv_, gmin_, gmax_);
      auto sgn = [](float x) { return static_cast<float>((x > 0) - (x < 0)); };
      for (std::size_t i = 0; i < v_.size(); ++i) v_[i] -= lr * sgn(gv_[i]);
      if (o.tune_minmax)
        for (std::size_t g = 0; g < range_.size(); ++g) {
          const float hi = std::max(o.minmax_hi, upper_[g]);
          min_scale_[g] = std::clamp(min_scale_[g] - minmax_lr * sgn(gmin_[g]), o.minmax_lo, hi);
          max_scale_[g] = std::clamp(max_scale_[g] - minmax_lr * sgn(gmax_[g]), o.minmax_lo, hi);
        }
    }
  }

  // The multiplier m (of both the group's min and max) at which the format's rule gives scale `target`: the
  // middle of the interval of such m, or 0 where none does.
  float multiplier_for(std::size_t gi, float target) const {
    const value_range vr = range_[gi];
    auto at = [&](float m) { return F::group_params(m * vr.lo, m * vr.hi, ts_); };
    if (!(target > 0) || !std::isfinite(target) || !(at(1.0f).scale > 0)) return 0.0f;
    float b = 1.0f;  // the smallest m with scale(m) >= target lies in (0, b]
    while (at(b).scale < target && b < 1e30f) b *= 2;
    b = detail::bisect(b, 0.0f, 64, [&](float m) { return at(m).scale >= target; });
    if (at(b).scale != target) return 0.0f;
    float d = b;  // the largest m with scale(m) <= target lies in [b, d)
    while (at(d).scale <= target && d < 1e30f) d *= 2;
    const float c = detail::bisect(b, d, 64, [&](float m) { return at(m).scale <= target; });
    return b + (c - b) / 2;
  }

  // The best iterate: save the current state, restore it later.
  void keep() { best_ = {v_, min_scale_, max_scale_}; }
  void restore() {
    if (!best_.v.empty()) {
      v_ = best_.v;
      min_scale_ = best_.min_scale;
      max_scale_ = best_.max_scale;
    }
  }

 private:
  std::span<const float> w_;  // the rounding base: the source weights, or base_ after start_from
  std::vector<float> base_;
  index_t rows_, cols_, gw_, gpr_;
  float ts_;
  std::vector<value_range> range_;  // per group, of the source weights
  std::vector<float> v_, min_scale_, max_scale_;
  std::vector<float> upper_;  // per group: a multiplier bound raised by start_from
  std::vector<float> gv_, gmin_, gmax_;  // scratch
  struct snapshot {
    std::vector<float> v, min_scale, max_scale;
  } best_;
};

}  // namespace pq
