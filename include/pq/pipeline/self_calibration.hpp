// pq/pipeline/self_calibration.hpp: data-free calibration. With no calibration text or tokens, pq samples
// calibration sequences from the source model itself: every sequence starts with the model's BOS token
// (config.json bos_token_id, else eos_token_id) and continues by seeded sampling at temperature 1 from
// the model's own next-token distribution, so the activations it calibrates on are those of text the
// model finds typical.
#pragma once
#include <cstdint>
#include <cstdio>
#include <functional>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <pq/core/hash.hpp>
#include <pq/model/decoder.hpp>
#include <pq/model/forward.hpp>
#include <pq/model/tokens.hpp>
#include <pq/pipeline/error.hpp>
#include <pq/text/sampling.hpp>

namespace pq::pipeline {

struct self_calibration_options {
  Eigen::Index sequences = 128;
  Eigen::Index length = 256;        // tokens per sequence, the start token included
  std::uint64_t seed = 0;
  float temperature = 1.0f;
  std::int32_t start_token = 0;     // see start_token()
  model::decoder_options decoder{};
};

// The token generation starts from: config.json's bos_token_id, else its eos_token_id (an integer or
// the first of a list); nullopt when neither is given.
inline std::optional<std::int32_t> start_token(const nlohmann::json& config) {
  for (const char* key : {"bos_token_id", "eos_token_id"}) {
    if (!config.contains(key)) continue;
    const nlohmann::json& v = config[key];
    if (v.is_number_integer()) return v.get<std::int32_t>();
    if (v.is_array() && !v.empty() && v[0].is_number_integer()) return v[0].get<std::int32_t>();
  }
  return std::nullopt;
}

// The generator of sequence i: seeded from (seed, i), so sequence i does not depend on how many
// sequences are generated with it.
inline text::sampler_rng sequence_rng(std::uint64_t seed, Eigen::Index i) {
  return text::sampler_rng(fnv1a{}.integer(seed).integer(static_cast<std::uint64_t>(i)).value);
}

// [sequences, length] tokens sampled from the model: position 0 is the start token, position p + 1 is
// drawn from the model's distribution after positions 0..p. All sequences advance together through an
// incremental decoder (KV cache). on_step(p, length - 1) is called after each generated position.
inline model::token_batch generate_calibration(const model::runner& m, const self_calibration_options& o,
                                               const std::function<void(Eigen::Index, Eigen::Index)>& on_step = {}) {
  if (o.sequences < 1 || o.length < 2)
    throw pipeline_error("self-calibration needs at least 1 sequence of at least 2 tokens");
  if (o.start_token < 0 || o.start_token >= m.config().vocab)
    throw model::model_error("self-calibration: start token " + std::to_string(o.start_token) +
                             " is outside the vocabulary [0, " + std::to_string(m.config().vocab) + ")");
  model::token_batch out{o.sequences, o.length,
                         std::vector<std::int32_t>(static_cast<std::size_t>(o.sequences * o.length), o.start_token)};
  std::vector<text::sampler_rng> rng;
  for (Eigen::Index i = 0; i < o.sequences; ++i) rng.push_back(sequence_rng(o.seed, i));
  model::decoder dec(m, o.sequences, o.length - 1, o.decoder);
  std::vector<std::int32_t> current(static_cast<std::size_t>(o.sequences), o.start_token);
  for (Eigen::Index p = 0; p + 1 < o.length; ++p) {
    const model::matrix logits = dec.step(current);
    for (Eigen::Index i = 0; i < o.sequences; ++i) {
      const auto row = logits.row(i);
      const std::int32_t id =
          text::sample_token(std::span<const float>(row.data(), static_cast<std::size_t>(row.size())), o.temperature,
                             rng[static_cast<std::size_t>(i)]);
      current[static_cast<std::size_t>(i)] = id;
      out.ids[static_cast<std::size_t>(i * o.length + p + 1)] = id;
    }
    if (on_step) on_step(p + 1, o.length - 1);
  }
  return out;
}

// How report.json describes self-generated calibration.
inline std::string describe(const self_calibration_options& o) {
  char t[32];
  std::snprintf(t, sizeof t, "%g", static_cast<double>(o.temperature));
  return "self-generated: " + std::to_string(o.sequences) + " x " + std::to_string(o.length) + ", seed " +
         std::to_string(o.seed) + ", temperature " + t + ", from token " + std::to_string(o.start_token);
}

}  // namespace pq::pipeline
