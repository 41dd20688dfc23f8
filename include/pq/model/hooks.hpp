// pq/model/hooks.hpp: what calibration sees of a forward/backward: Linear inputs and output gradients.
#pragma once
#include <pq/model/tensor.hpp>

#include <span>
#include <string>

namespace pq::model {

// Called from worker threads, possibly concurrently (one call per chunk of whole sequences):
// implementations synchronise themselves. Rows are tokens; for an MoE expert only the tokens
// routed to it.
class linear_hooks {
public:
  virtual ~linear_hooks() = default;
  // The input x [rows, in] shared by these Linears (q/k/v, gate/up see the same input).
  virtual void on_input(std::span<const std::string* const> linears, const matrix& x) = 0;
  // d(sum of token NLLs) / d(output of `linear`) [rows, out], from the backward pass.
  virtual void on_output_grad(const std::string& linear, const matrix& dy) = 0;
};

}  // namespace pq::model
