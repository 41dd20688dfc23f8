// pq/quant/error.hpp: the one exception type of the rounding algorithms; its message names the Linear.
#pragma once
#include <stdexcept>

#include <pq/error.hpp>

namespace pq {

// Bad input to a rounding algorithm (non-finite weights or activations, mismatched shapes or statistics,
// corrupt serialized statistics). The message names the Linear (or the byte stream) and what is wrong.
struct quant_error : pq::error {
  using pq::error::error;
};

}  // namespace pq
