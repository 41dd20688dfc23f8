// pq/model/tensor.hpp: fp32 host matrices of the model runtime and the error type of pq::model.
#pragma once
#include <Eigen/Core>

#include <stdexcept>
#include <string>

#include <pq/error.hpp>

namespace pq::model {

// Row-major like the checkpoints: a Linear weight is [out_features, in_features], activations
// are [tokens, features].
using matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using vector = Eigen::VectorXf;
using row_vector = Eigen::RowVectorXf;
using matrix_d = Eigen::MatrixXd;
using vector_d = Eigen::VectorXd;

// A checkpoint, token file or statistics file the runtime cannot use: the message names the
// file or tensor and what is wrong.
class model_error : public pq::error {
public:
  using pq::error::error;
};

}  // namespace pq::model
