// pq/error.hpp: the base of every exception pq throws. Each condition has one type deriving from it
// (a corrupt file, an unknown format, an infeasible budget, ...), so a caller catches pq::error for
// "pq refused this input, the message says why" and lets anything else through.
#pragma once
#include <stdexcept>

namespace pq {

struct error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace pq
