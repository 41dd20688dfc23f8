// Binds an options struct of pq::pipeline (option<T> fields, see include/pq/pipeline/options.hpp) to a
// CLI11 command: every field with a flag becomes one command-line option, with its help and default, so
// the command line cannot fall behind the struct.
#pragma once
#include <filesystem>
#include <string>
#include <type_traits>
#include <vector>

#include <CLI/CLI.hpp>

#include <pq/pipeline/options.hpp>

namespace pq::cli {

template <class T>
void bind_option(CLI::App& cmd, pipeline::option<T>& f) {
  if (f.flag.empty()) return;
  const std::string flag(f.flag), help(f.help);
  CLI::Option* opt = nullptr;
  if constexpr (std::is_same_v<T, bool>) {
    const bool negated = f.flag.starts_with("--no-");
    opt = cmd.add_flag_callback(flag, [&f, negated] { f.value = !negated; }, help);
  } else if constexpr (std::is_same_v<T, rounding>) {
    std::string names;
    for (const auto& s : rounding_spellings) names += (names.empty() ? "" : ", ") + std::string(s.cli);
    opt = cmd.add_option_function<std::string>(
                 flag,
                 [&f, flag, names](const std::string& v) {
                   const auto r = parse_rounding(v);
                   if (!r) throw CLI::ValidationError(flag, "'" + v + "': expected one of " + names);
                   f.value = *r;
                 },
                 help)
              ->default_str(std::string(rounding_cli_name(f.value)));
  } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
    std::string def;
    for (const auto& s : f.value) def += (def.empty() ? "" : ",") + s;
    opt = cmd.add_option(flag, f.value, help)->delimiter(',')->default_str(def);
  } else {
    opt = cmd.add_option(flag, f.value, help)->capture_default_str();
  }
  if (f.required) opt->required();
}

template <class Options>
void bind_options(CLI::App& cmd, Options& o) {
  pipeline::for_each_option(o, [&](auto& f) { bind_option(cmd, f); });
}

// The example every command's --help ends with.
inline void add_example(CLI::App& cmd, const std::string& example) { cmd.footer("\nExample:\n  " + example); }

}  // namespace pq::cli
