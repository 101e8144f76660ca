// executor/forward: the executor's forward pass in one include: the weights (executor/model_weights.hpp) and the
// session that runs them on a backend (executor/session.hpp).
#pragma once
#include "executor/model_weights.hpp"
#include "executor/session.hpp"
