// pq/model/architecture.hpp: the architecture profile of a checkpoint (pq/arch/profile.hpp: every
// quantizable Linear, the decision units vLLM fuses, the Linears kept in full precision), named here for
// the model runtime and the pipeline.
#pragma once
#include <pq/arch/profile.hpp>
#include <pq/model/config.hpp>

namespace pq::model {

using arch::decision_unit;
using arch::linear_info;
using arch::make_profile;
using arch::profile;

}  // namespace pq::model
