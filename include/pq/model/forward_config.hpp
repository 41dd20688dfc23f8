// pq/model/forward_config.hpp: the shape facts the forward needs; defined with the architecture
// descriptions (pq/arch/config.hpp), named here for the model runtime.
#pragma once
#include <pq/arch/config.hpp>

namespace pq::model {

using arch::forward_config;
using arch::moe_config;
using arch::rope_precision;

}  // namespace pq::model
