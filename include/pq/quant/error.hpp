// pq/quant/error.hpp: the one exception type of the rounding algorithms; its message names the Linear.
#pragma once
#include <stdexcept>

namespace pq {

// Bad input to a rounding algorithm (non-finite weights or activations, mismatched shapes or statistics,
// corrupt serialized statistics). The message names the Linear (or the byte stream) and what is wrong.
struct quant_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace pq
