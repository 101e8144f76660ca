// reports/views_report: the views over many configurations as Reports: `moeplan memory --sweep`, `moeplan
// fit-matrix`, `moeplan hosts` and `moeplan claims`.
#pragma once
#include <string>
#include <vector>

#include "model/claims.hpp"
#include "model/config.hpp"
#include "reports/render.hpp"
#include "simulator/fit_matrix.hpp"
#include "simulator/host_view.hpp"
#include "simulator/memory_sweep.hpp"

namespace moeplan::reports {

// `moeplan memory --sweep context|concurrency`: GB per GPU (and GPUs to fit) per value x precision.
Report memory_sweep_report(const simulator::MemorySweepRequest& request, const simulator::MemorySweep& result);
// `moeplan fit-matrix`: one row per GPU x precision.
Report fit_matrix_report(const simulator::FitMatrixRequest& request, const simulator::FitMatrix& result);
// `moeplan hosts`: RAM needed, fit, recommended RAM and llama.cpp speeds per host x precision; one-GPU offload rows.
Report host_view_report(const simulator::HostViewRequest& request, const simulator::HostView& result);
// `moeplan claims`: each recorded claim about the model against its config; `file` names the claims file.
Report claims_report(const model::ModelConfig& model, const std::string& file,
                     const std::vector<model::ClaimCheck>& checks);
// `moeplan claims --quantities`: the quantities a claim may name and how each is computed.
Report claim_quantities_report();

}  // namespace moeplan::reports
