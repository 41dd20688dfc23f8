// pq/pipeline/error.hpp: the pipeline's one error type: an option, an input or a stage of `pq quantize` (and
// of the synthetic and self-calibration inputs) that pq refuses; the message names the flag or file.
#pragma once
#include <pq/error.hpp>

namespace pq::pipeline {

struct pipeline_error : pq::error {
  using pq::error::error;
};

}  // namespace pq::pipeline
