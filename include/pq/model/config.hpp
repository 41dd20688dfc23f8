// pq/model/config.hpp: a Hugging Face config.json read into what pq needs (pq/arch/registry.hpp: the
// architecture description its model_type selects, and the shapes of the forward).
#pragma once
#include <pq/arch/registry.hpp>
#include <pq/model/forward_config.hpp>

namespace pq::model {

using arch::config_error;
using arch::model_config;
using arch::parse_config;

}  // namespace pq::model
