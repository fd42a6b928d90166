// dilated_attention.hpp - umbrella header of the dilated-attention library.
//
//   #include <dilated_attention.hpp>
//   dilated::Plan<Kokkos::DefaultExecutionSpace> plan(config, shape);
//   plan.forward(q, k, v, out, lse);
#pragma once

#include "dilated/config.hpp"
#include "dilated/cost.hpp"
#include "dilated/dilated_config.hpp"
#include "dilated/error.hpp"
#include "dilated/pattern.hpp"
#include "dilated/plan.hpp"
#include "dilated/reference.hpp"
#include "dilated/tensor_ref.hpp"
#include "dispatch/auto_plan.hpp"
