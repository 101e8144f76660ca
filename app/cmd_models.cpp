// `moeplan models`: the built-in models, or one model (built-in or any config.json) in detail.
#include <iostream>

#include "app/cli.hpp"
#include "common/files.hpp"
#include "model/config.hpp"
#include "model/summary.hpp"
#include "reports/model_report.hpp"

namespace po = boost::program_options;

namespace moeplan::app {

int cmd_models(const std::vector<std::string>& args, std::ostream& out) {
  Common common;
  std::string model_name;
  po::options_description d("models options");
  add_common_options(d, common);
  d.add_options()("model", po::value<std::string>(&model_name),
                  "show one model in detail: a built-in name or a path to an HF config.json");
  po::variables_map vm;
  if (!parse("models", "[--model NAME|config.json] [--format table|md|json|csv]", args, d, vm, out)) return kExitOk;
  const auto data = data_dir();
  if (!model_name.empty()) {
    const auto m = model::load_model(model_name, data);
    emit(reports::model_detail_report(m, model::summarize(m)), common, out);
    return kExitOk;
  }
  std::vector<model::ModelSummary> summaries;
  for (const auto& name : model::builtin_model_names(data)) summaries.push_back(model::summarize(model::load_model(name, data)));
  emit(reports::models_report(summaries), common, out);
  return kExitOk;
}

}  // namespace moeplan::app
