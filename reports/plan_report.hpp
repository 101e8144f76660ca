// reports/plan_report: `moeplan plan` and `moeplan compare-api` as Reports.
#pragma once
#include <optional>
#include <vector>

#include "planner/plan.hpp"
#include "planner/serving_compare.hpp"
#include "reports/render.hpp"

namespace moeplan::reports {

// The ranked rows (the first `top`), rejections, launch commands and, when prices exist, the API comparison of #1.
Report plan_report(const planner::PlanRequest& request, const planner::PlanResult& result,
                   const std::vector<planner::LaunchCommand>& launch, const std::optional<planner::ApiComparison>& api,
                   int top, bool verbose);
// The self-hosted row `self` against every API price of the model, with the break-even volume.
Report compare_api_report(const planner::PlanRequest& request, const planner::PlanRow& self,
                          const planner::ApiComparison& comparison);

}  // namespace moeplan::reports
