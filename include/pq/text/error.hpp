// The one exception type of pq::text: bad text, bad or unsupported tokenizer.json, too little data.
#pragma once

#include <stdexcept>
#include <string>

namespace pq::text {

struct text_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace pq::text
