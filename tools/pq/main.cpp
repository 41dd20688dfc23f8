// pq: the command-line driver. Each subcommand lives in its own cmd_*.hpp beside this file; each is a thin
// layer over library calls (include/pq), so everything it does can be done, and is tested, without it.
#include <exception>

#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include "cmd_bench.hpp"
#include "cmd_demo.hpp"
#include "cmd_eval.hpp"
#include "cmd_export.hpp"
#include "cmd_formats.hpp"
#include "cmd_inspect.hpp"
#include "cmd_quantize.hpp"
#include "cmd_synth.hpp"
#include "cmd_tokenize.hpp"

int main(int argc, char** argv) {
  CLI::App app{"pq: mixed-precision quantization of LLM checkpoints (compressed-tensors for vLLM)"};
  app.set_version_flag("--version", PQ_VERSION_STRING);
  app.require_subcommand(1);
  app.footer("\nExample:\n  pq demo                      # the whole pipeline on a synthetic model\n"
             "  pq quantize --help           # each command's --help ends with an example");
  pq::cli::add_formats_command(app);
  pq::cli::add_inspect_command(app);
  pq::cli::add_synth_command(app);
  pq::cli::add_quantize_command(app);
  pq::cli::add_demo_command(app);
  pq::cli::add_eval_commands(app);
  pq::cli::add_export_commands(app);
  pq::cli::add_text_commands(app);
  pq::cli::add_bench_command(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    fmt::print(stderr, "pq: error: {}\n", e.what());
    return 1;
  }
  return 0;
}
