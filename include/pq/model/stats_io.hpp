// pq/model/stats_io.hpp: save and load calibration_stats (a small binary file, written atomically).
#pragma once
#include <pq/io/atomic_file.hpp>
#include <pq/model/calibration.hpp>

#include <array>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>

namespace pq::model {

namespace detail {
inline constexpr std::array<char, 8> stats_magic{'P', 'Q', 'S', 'T', 'A', 'T', 'S', '1'};

class stats_writer {
public:
  explicit stats_writer(std::ofstream& f) : f_(f) {}
  template <class T>
  void pod(const T& v) { f_.write(reinterpret_cast<const char*>(&v), sizeof(T)); }
  void doubles(const double* p, Eigen::Index n) { f_.write(reinterpret_cast<const char*>(p), static_cast<std::streamsize>(n * 8)); }
  void text(const std::string& s) {
    pod<std::uint64_t>(s.size());
    f_.write(s.data(), static_cast<std::streamsize>(s.size()));
  }

private:
  std::ofstream& f_;
};

class stats_reader {
public:
  stats_reader(std::ifstream& f, std::string path) : f_(f), path_(std::move(path)) {}
  template <class T>
  T pod() {
    T v{};
    read(reinterpret_cast<char*>(&v), sizeof(T));
    return v;
  }
  void doubles(double* p, Eigen::Index n) { read(reinterpret_cast<char*>(p), static_cast<std::size_t>(n) * 8); }
  std::string text() {
    const auto n = count(1 << 16, "name length");
    std::string s(n, '\0');
    read(s.data(), n);
    return s;
  }
  // A count read from the file, refused above `limit` (a corrupt file must not allocate wildly).
  std::size_t count(std::uint64_t limit, const char* what) {
    const auto n = pod<std::uint64_t>();
    if (n > limit) fail(std::string(what) + " " + std::to_string(n) + " is implausible");
    return static_cast<std::size_t>(n);
  }
  [[noreturn]] void fail(const std::string& what) const {
    throw model_error("calibration statistics '" + path_ + "': " + what);
  }

private:
  void read(char* p, std::size_t n) {
    if (!f_.read(p, static_cast<std::streamsize>(n))) fail("file is truncated");
  }
  std::ifstream& f_;
  std::string path_;
};
}  // namespace detail

// Writes `stats` to `path` (via a temporary file renamed into place). Input statistics
// shared by several Linears are written once.
inline void save_stats(const calibration_stats& stats, const std::filesystem::path& path) {
  io::write_atomically(path, [&](const std::filesystem::path& tmp) {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) throw model_error("cannot write calibration statistics '" + tmp.string() + "'");
    detail::stats_writer w(f);
    std::map<const input_stats*, std::uint64_t> site_index;
    std::vector<const input_stats*> sites;
    for (const auto& [name, ls] : stats.linears)
      if (site_index.emplace(ls.input.get(), sites.size()).second) sites.push_back(ls.input.get());
    f.write(detail::stats_magic.data(), detail::stats_magic.size());
    w.pod<std::int64_t>(stats.tokens);
    w.pod<std::int64_t>(stats.gradient_tokens);
    w.pod<std::uint64_t>(sites.size());
    for (const input_stats* s : sites) {
      w.pod<std::uint64_t>(static_cast<std::uint64_t>(s->mean_sq.size()));
      w.pod(s->amax);
      w.pod(s->tokens);
      w.pod(s->prior_tokens);
      w.doubles(s->mean_sq.data(), s->mean_sq.size());
      w.doubles(s->xtx.data(), s->xtx.size());
    }
    w.pod<std::uint64_t>(stats.linears.size());
    for (const auto& [name, ls] : stats.linears) {
      w.text(name);
      w.pod(site_index.at(ls.input.get()));
      w.pod(ls.sensitivity);
      w.pod(ls.gradient_tokens);
      w.pod(ls.sensitivity_prior_tokens);
    }
    if (!f.flush()) throw model_error("cannot write calibration statistics '" + tmp.string() + "'");
  });
}

inline calibration_stats load_stats(const std::filesystem::path& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw model_error("cannot open calibration statistics '" + path.string() + "'");
  detail::stats_reader r(f, path.string());
  std::array<char, 8> magic{};
  f.read(magic.data(), magic.size());
  if (!f || magic != detail::stats_magic) r.fail("not a pq statistics file (bad magic)");
  calibration_stats out;
  out.tokens = r.pod<std::int64_t>();
  out.gradient_tokens = r.pod<std::int64_t>();
  std::vector<std::shared_ptr<const input_stats>> sites(r.count(1 << 24, "site count"));
  for (auto& site : sites) {
    const auto k = static_cast<Eigen::Index>(r.count(1 << 18, "input width"));
    auto s = std::make_shared<input_stats>();
    s->amax = r.pod<float>();
    s->tokens = r.pod<std::int64_t>();
    s->prior_tokens = r.pod<double>();
    s->mean_sq.resize(k);
    r.doubles(s->mean_sq.data(), k);
    s->xtx.resize(k, k);
    r.doubles(s->xtx.data(), k * k);
    site = std::move(s);
  }
  const std::size_t n = r.count(1 << 24, "Linear count");
  for (std::size_t i = 0; i < n; ++i) {
    std::string name = r.text();
    const std::size_t site = r.count(1 << 24, "site index");
    if (site >= sites.size()) r.fail("Linear '" + name + "' refers to a missing input site");
    linear_stats ls{sites[site], r.pod<double>(), r.pod<std::int64_t>(), r.pod<double>()};
    out.linears.emplace(std::move(name), std::move(ls));
  }
  return out;
}

}  // namespace pq::model
