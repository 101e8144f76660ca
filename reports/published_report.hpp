// reports/published_report: `moeplan validate --published` as a Report: each published measurement against the
// simulator's prediction, and the error by engine, vendor and phase.
#pragma once
#include <vector>

#include <nlohmann/json.hpp>

#include "reports/render.hpp"
#include "simulator/published.hpp"

namespace moeplan::reports {

Report published_report(const simulator::PublishedSummary& summary, const simulator::PublishedSet& set);

// The published set's error groups (validate --published, or data/validation/error_bars.yaml) as a table and JSON;
// validate --published prints it, simulate's error bars and the deployment report cite it.
Table error_groups_table(const std::vector<simulator::ErrorGroup>& groups, nlohmann::json& groups_json);

}  // namespace moeplan::reports
