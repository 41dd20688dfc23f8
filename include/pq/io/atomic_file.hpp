// pq/io/atomic_file.hpp: pq's one way of writing an output. Everything pq writes (a checkpoint directory, a
// stored rounding, calibration statistics, a work-folder file, a decoded safetensors file) is first written
// under a temporary sibling name and renamed onto its final path only when complete, so a reader, or a run
// that resumes after a crash, sees whole outputs or none; an output abandoned by an exception is removed.
#pragma once
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include <unistd.h>

#include <pq/error.hpp>

namespace pq::io {

// Writing an output failed (disk full, permissions): the message names the file.
struct write_error : pq::error {
  using pq::error::error;
};

// One output in the making: write under tmp() (a file or a directory), then commit(). The temporary is a
// hidden sibling named after the target and this process, so two processes never share one. Without
// commit(), the destructor removes it.
class atomic_output {
 public:
  explicit atomic_output(std::filesystem::path target)
      : target_(std::move(target)),
        tmp_(target_.parent_path() / ("." + target_.filename().string() + ".pq-tmp-" + std::to_string(::getpid()))) {
    std::error_code ec;
    std::filesystem::remove_all(tmp_, ec);
  }
  atomic_output(const atomic_output&) = delete;
  atomic_output& operator=(const atomic_output&) = delete;
  ~atomic_output() {
    if (!committed_) {
      std::error_code ec;
      std::filesystem::remove_all(tmp_, ec);
    }
  }

  const std::filesystem::path& tmp() const { return tmp_; }
  const std::filesystem::path& target() const { return target_; }

  // Moves the temporary onto the target. A file replaces an existing file atomically; a directory replaces
  // an existing one only with replace_directory (the caller has decided, e.g. --force), else it is an error.
  void commit(bool replace_directory = false) {
    namespace fs = std::filesystem;
    if (fs::is_directory(tmp_) && fs::exists(target_)) {
      if (!replace_directory) throw write_error(target_.string() + ": exists; refusing to replace it");
      fs::remove_all(target_);
    }
    std::error_code ec;
    fs::rename(tmp_, target_, ec);
    if (ec) throw write_error(target_.string() + ": cannot move " + tmp_.string() + " into place (" + ec.message() + ")");
    committed_ = true;
  }

 private:
  std::filesystem::path target_, tmp_;
  bool committed_ = false;
};

// writer(tmp) writes the output under tmp; it appears at `target` only if writer returns.
template <class Writer>
void write_atomically(const std::filesystem::path& target, Writer&& writer, bool replace_directory = false) {
  atomic_output out(target);
  std::forward<Writer>(writer)(out.tmp());
  out.commit(replace_directory);
}

inline void write_text_atomically(const std::filesystem::path& target, std::string_view text) {
  write_atomically(target, [&](const std::filesystem::path& tmp) {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    out.close();
    if (!out) throw write_error(tmp.string() + ": write failed");
  });
}

}  // namespace pq::io
