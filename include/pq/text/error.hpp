// The one exception type of pq::text: bad text, bad or unsupported tokenizer.json, too little data.
#pragma once

#include <stdexcept>
#include <string>

#include <pq/error.hpp>

namespace pq::text {

struct text_error : pq::error {
  using pq::error::error;
};

}  // namespace pq::text
