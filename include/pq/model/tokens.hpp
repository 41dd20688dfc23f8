// pq/model/tokens.hpp: a batch of equal-length token sequences, checked against the vocabulary.
#pragma once
#include <pq/model/tensor.hpp>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace pq::model {

struct token_batch {
  Eigen::Index sequences = 0;
  Eigen::Index length = 0;
  std::vector<std::int32_t> ids;  // row-major [sequences, length]

  Eigen::Index tokens() const { return sequences * length; }
  std::int32_t at(Eigen::Index seq, Eigen::Index pos) const { return ids[static_cast<std::size_t>(seq * length + pos)]; }

  // The first `n` sequences (all of them when n exceeds the batch).
  token_batch first(Eigen::Index n) const {
    n = std::min(n, sequences);
    return {n, length, std::vector<std::int32_t>(ids.begin(), ids.begin() + n * length)};
  }
};

// Builds a batch from a [sequences, length] id array; `what` names its origin in errors
// (e.g. "tokens.safetensors:eval"). Throws model_error on a bad shape or an id outside [0, vocab).
inline token_batch make_token_batch(std::span<const std::int64_t> shape, std::vector<std::int32_t> ids,
                                    std::int64_t vocab, const std::string& what) {
  if (shape.size() != 2 || shape[0] <= 0 || shape[1] <= 0)
    throw model_error(what + ": token tensor must have shape [sequences, length], got rank " +
                      std::to_string(shape.size()));
  if (static_cast<std::int64_t>(ids.size()) != shape[0] * shape[1])
    throw model_error(what + ": token tensor holds " + std::to_string(ids.size()) + " ids, shape says " +
                      std::to_string(shape[0] * shape[1]));
  for (std::size_t i = 0; i < ids.size(); ++i)
    if (ids[i] < 0 || ids[i] >= vocab)
      throw model_error(what + ": token id " + std::to_string(ids[i]) + " at position " + std::to_string(i) +
                        " is outside the vocabulary [0, " + std::to_string(vocab) + ")");
  return {shape[0], shape[1], std::move(ids)};
}

}  // namespace pq::model
