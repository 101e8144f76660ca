// reports/model_report: `moeplan models` as a Report: every model in one table, or one model in detail.
#pragma once
#include <vector>

#include "model/config.hpp"
#include "model/summary.hpp"
#include "reports/render.hpp"

namespace moeplan::reports {

Report models_report(const std::vector<model::ModelSummary>& models);
// One model in detail: per-module parameters and the layer pattern.
Report model_detail_report(const model::ModelConfig& model, const model::ModelSummary& summary);

}  // namespace moeplan::reports
