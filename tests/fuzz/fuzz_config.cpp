// libFuzzer target: any text given as config.json either parses to a model configuration and profile
// or is one clear error (invalid JSON or config_error), never a crash.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include <pq/model/architecture.hpp>
#include <pq/model/config.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return 0;
  try {
    const auto cfg = pq::model::parse_config(j, "fuzz/config.json");
    if (cfg.shape.layers <= 64 && cfg.shape.moe.num_experts <= 256) (void)pq::model::make_profile(cfg);  // bounded work per input
  } catch (const pq::model::config_error&) {
  }
  return 0;
}
