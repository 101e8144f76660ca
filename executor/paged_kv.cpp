// executor/paged_kv: paged KV cache plan and block tables (see paged_kv.hpp).
#include "executor/paged_kv.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <string>

#include "common/error.hpp"
#include "common/text.hpp"

namespace moeplan::executor {

namespace {

std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }

std::string gib(double bytes) {
  const double g = bytes / 1073741824.0;
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", g);
  return buf;
}

// The most pages a sequence of `context` positions, `step` of them added at once, holds in `layer` (see plan_paged_kv).
std::int64_t pages_in_layer(const model::LayerSpec& layer, std::int64_t context, std::int64_t P, std::int64_t step) {
  const std::int64_t n =
      std::min(context, model::kv_tokens_kept(layer, context, model::KvMode::model_aware) + std::max<std::int64_t>(step, 1) - 1);
  if (n == 0) return 0;
  const bool aligned = layer.attention == model::AttentionKind::global ||
                       (layer.attention == model::AttentionKind::chunked && layer.attention_window_tokens % P == 0);
  return aligned ? ceil_div(n, P) : ceil_div(n - 1, P) + 1;
}

void check_request(const PagedKvRequest& r) {
  if (!r.model) throw std::logic_error("plan_paged_kv: no model");
  const model::ModelConfig& m = *r.model;
  if (r.page_tokens < 1) throw InputError("KV page size " + std::to_string(r.page_tokens) + " must be at least 1 token");
  if (r.context_tokens < 1) throw InputError("context of " + std::to_string(r.context_tokens) + " tokens must be at least 1");
  if (r.sequences < 1) throw InputError(std::to_string(r.sequences) + " sequences: at least 1 is needed");
  if (r.step_tokens < 1) throw InputError("a step of " + std::to_string(r.step_tokens) + " tokens: at least 1 is needed");
  if (m.max_context_tokens > 0 && r.context_tokens > m.max_context_tokens)
    throw InputError("context of " + with_commas(r.context_tokens) + " tokens is above " + m.name + "'s limit of " +
                     with_commas(m.max_context_tokens) + " tokens (max_position_embeddings)");
  model::validate_layout(m, r.layout);
  if (r.stage < 0 || r.stage >= r.layout.pp)
    throw InputError("pipeline stage " + std::to_string(r.stage) + " is outside the " + std::to_string(r.layout.pp) + " stages");
}

}  // namespace

std::int64_t first_visible_position(const model::LayerSpec& layer, std::int64_t query_pos) {
  if (layer.attention == model::AttentionKind::chunked)
    return (query_pos / layer.attention_window_tokens) * layer.attention_window_tokens;
  if (layer.attention == model::AttentionKind::sliding)
    return std::max<std::int64_t>(query_pos - layer.attention_window_tokens + 1, 0);
  return 0;
}

PagedKvPlan plan_paged_kv(const PagedKvRequest& r) {
  check_request(r);
  const model::ModelConfig& m = *r.model;
  PagedKvPlan plan;
  plan.page_tokens = r.page_tokens;
  plan.context_tokens = r.context_tokens;
  plan.sequences = r.sequences;
  const std::int64_t kv_heads = model::kv_heads_per_gpu(m, r.layout);
  const auto [first, last] = model::stage_layers(m, r.layout, r.stage);
  std::int64_t token_bytes = 0;
  for (int li = first; li < last; ++li) {
    const model::LayerSpec& spec = m.layers[static_cast<std::size_t>(li)];
    PagedKvLayer layer{li, model::kv_bytes_per_token_per_layer(m, spec, r.kv_dtype, kv_heads),
                       pages_in_layer(spec, r.context_tokens, r.page_tokens, r.step_tokens)};
    token_bytes = std::max(token_bytes, layer.token_bytes);
    plan.pages_per_sequence += layer.pages_per_sequence;
    plan.layers.push_back(layer);
  }
  plan.page_bytes = token_bytes * r.page_tokens;
  plan.pages_needed = plan.pages_per_sequence * r.sequences;
  plan.pages_total = plan.page_bytes > 0 && r.budget_bytes > 0
                         ? static_cast<std::int64_t>(std::floor(r.budget_bytes / static_cast<double>(plan.page_bytes)))
                         : 0;
  if (plan.pages_needed > plan.pages_total)
    throw InputError("paged KV cache: " + std::to_string(r.sequences) + " sequences of " + with_commas(r.context_tokens) +
                     " tokens need " + with_commas(plan.pages_needed) + " pages of " + std::to_string(r.page_tokens) +
                     " tokens (" + gib(static_cast<double>(plan.pages_needed) * static_cast<double>(plan.page_bytes)) +
                     " GiB) on this GPU; its KV budget of " + gib(r.budget_bytes) + " GiB holds " +
                     with_commas(plan.pages_total) + " (fewer sequences, a shorter context or more GPUs)");
  return plan;
}

PagedKvPlan check_kv_fits_device(const model::ModelConfig& model, const model::ParallelLayout& layout,
                                 std::int64_t sequences, std::int64_t context_tokens, double free_bytes,
                                 double weight_bytes, model::KvDtype kv_dtype, std::int64_t step_tokens) {
  PagedKvRequest r;
  r.model = &model;
  r.layout = layout;
  r.kv_dtype = kv_dtype;
  r.context_tokens = context_tokens;
  r.sequences = sequences;
  r.step_tokens = step_tokens;
  r.budget_bytes = std::max(0.0, free_bytes - weight_bytes);
  try {
    return plan_paged_kv(r);
  } catch (const InputError& e) {
    throw InputError(std::string(e.what()) + "; the device has " + gib(free_bytes) + " GiB free and the weights take " +
                     gib(weight_bytes) + " GiB (KV cached in " + model::kv_dtype_name(kv_dtype) + ")");
  }
}

double kv_budget_bytes(const simulator::MemoryBreakdown& b) {
  return std::max(0.0, b.usable_bytes - b.weights.total - b.activation_bytes - b.overhead_bytes);
}

PageTable::PageTable(const model::ModelConfig& model, const PagedKvPlan& plan)
    : page_tokens_(plan.page_tokens), context_tokens_(plan.context_tokens), pages_total_(plan.pages_total),
      tables_(plan.layers.size(), std::vector<Table>(static_cast<std::size_t>(plan.sequences))),
      lengths_(static_cast<std::size_t>(plan.sequences), 0) {
  for (const PagedKvLayer& l : plan.layers) specs_.push_back(model.layers.at(static_cast<std::size_t>(l.layer)));
  free_.reserve(static_cast<std::size_t>(plan.pages_total));
  for (std::int64_t p = plan.pages_total; p-- > 0;) free_.push_back(static_cast<std::int32_t>(p));  // page 0 on top
}

void PageTable::extend(std::int64_t seq, std::int64_t context, std::int64_t first_query) {
  std::int64_t& length = lengths_.at(static_cast<std::size_t>(seq));
  if (context > context_tokens_)
    throw InputError("sequence " + std::to_string(seq) + " reaches " + with_commas(context) +
                     " tokens, beyond the " + with_commas(context_tokens_) + " its paged KV cache was planned for");
  if (context < length) throw std::logic_error("PageTable::extend: a sequence does not shrink");
  for (std::size_t li = 0; li < tables_.size(); ++li) {
    Table& t = tables_[li][static_cast<std::size_t>(seq)];
    const std::int64_t keep_from = first_visible_position(specs_[li], std::max(length, first_query));
    std::size_t dead = 0;  // pages wholly below keep_from
    while (dead < t.pages.size() && t.first + static_cast<std::int64_t>(dead + 1) * page_tokens_ <= keep_from) ++dead;
    free_.insert(free_.end(), t.pages.begin(), t.pages.begin() + static_cast<std::ptrdiff_t>(dead));
    t.pages.erase(t.pages.begin(), t.pages.begin() + static_cast<std::ptrdiff_t>(dead));
    t.first = t.pages.empty() ? keep_from / page_tokens_ * page_tokens_ : t.first + static_cast<std::int64_t>(dead) * page_tokens_;
    while (t.first + static_cast<std::int64_t>(t.pages.size()) * page_tokens_ < context) {
      if (free_.empty())
        throw InputError("paged KV cache: sequence " + std::to_string(seq) + " at " + with_commas(context) +
                         " tokens finds all " + with_commas(pages_total_) + " pages of " + std::to_string(page_tokens_) +
                         " tokens held (fewer sequences, a shorter prompt or context)");
      t.pages.push_back(free_.back());
      free_.pop_back();
    }
  }
  length = context;
}

void PageTable::release(std::int64_t seq) {
  for (auto& layer : tables_) {
    Table& t = layer.at(static_cast<std::size_t>(seq));
    free_.insert(free_.end(), t.pages.begin(), t.pages.end());
    t = Table{};
  }
  lengths_.at(static_cast<std::size_t>(seq)) = 0;
}

const PageTable::Table& PageTable::table(std::size_t layer_index, std::int64_t seq) const {
  return tables_.at(layer_index).at(static_cast<std::size_t>(seq));
}

PageTable::Slot PageTable::slot(std::size_t layer_index, std::int64_t seq, std::int64_t pos) const {
  const Table& t = table(layer_index, seq);
  if (pos < t.first || pos >= t.first + static_cast<std::int64_t>(t.pages.size()) * page_tokens_)
    throw std::out_of_range("PageTable::slot: position " + std::to_string(pos) + " is not held");
  return {t.pages[static_cast<std::size_t>((pos - t.first) / page_tokens_)], (pos - t.first) % page_tokens_};
}

const std::vector<std::int32_t>& PageTable::pages(std::size_t layer_index, std::int64_t seq) const {
  return table(layer_index, seq).pages;
}

std::int64_t PageTable::first_position(std::size_t layer_index, std::int64_t seq) const {
  return table(layer_index, seq).first;
}

}  // namespace moeplan::executor
