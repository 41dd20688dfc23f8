// pq/pipeline/progress.hpp: stage progress for long runs: a bar with ETA on a terminal, plain log lines
// (at most one per ~10% and at the end) when stderr is a file or a pipe.
#pragma once
#include <chrono>
#include <cstdio>
#include <string>

#include <unistd.h>

namespace pq::pipeline {

class progress {
 public:
  progress(std::string stage, long long total, std::FILE* out = stderr)
      : stage_(std::move(stage)), total_(total > 0 ? total : 1), out_(out), tty_(isatty(fileno(out)) != 0),
        start_(clock::now()) {}
  progress(const progress&) = delete;
  progress& operator=(const progress&) = delete;
  ~progress() { finish(); }

  void advance(long long n = 1) { update(done_ + n); }

  void update(long long done) {
    done_ = done < total_ ? done : total_;
    const double frac = static_cast<double>(done_) / static_cast<double>(total_);
    const double elapsed = seconds();
    const double eta = done_ > 0 ? elapsed * (1.0 - frac) / frac : 0.0;
    if (tty_) {
      const auto now = clock::now();
      if (done_ < total_ && now - last_draw_ < std::chrono::milliseconds(100)) return;
      last_draw_ = now;
      constexpr int width = 30;
      const int filled = static_cast<int>(frac * width);
      std::fprintf(out_, "\r%-12s [%.*s%*s] %5.1f%%  %6.1fs  ETA %6.1fs", stage_.c_str(), filled,
                   "==============================", width - filled, "", 100.0 * frac, elapsed, eta);
      std::fflush(out_);
    } else {
      const int decile = static_cast<int>(frac * 10.0);
      if (decile > last_decile_ && done_ < total_) {
        last_decile_ = decile;
        std::fprintf(out_, "%s: %lld/%lld (%.0f%%), %.1fs elapsed, ETA %.1fs\n", stage_.c_str(), done_, total_,
                     100.0 * frac, elapsed, eta);
      }
    }
  }

  // Ends the stage (idempotent) and returns its wall time in seconds.
  double finish() {
    if (!finished_) {
      finished_ = true;
      done_ = total_;
      if (tty_) std::fprintf(out_, "\r%-12s done in %.2fs%*s\n", stage_.c_str(), seconds(), 40, "");
      else std::fprintf(out_, "%s: done in %.2fs\n", stage_.c_str(), seconds());
      elapsed_ = seconds();
    }
    return elapsed_;
  }

  double seconds() const { return std::chrono::duration<double>(clock::now() - start_).count(); }

 private:
  using clock = std::chrono::steady_clock;
  std::string stage_;
  long long total_, done_ = 0;
  std::FILE* out_;
  bool tty_;
  clock::time_point start_, last_draw_{};
  int last_decile_ = 0;
  bool finished_ = false;
  double elapsed_ = 0.0;
};

}  // namespace pq::pipeline
