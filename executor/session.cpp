// executor/session: the forward pass of one rank on a compute backend (see session.hpp; semantics in
// tests/fixtures/oracle/README.md): a step's tokens through the embedding, every layer (attention with the KV cache,
// dense MLP or MoE), the final norm and the lm_head, with the collectives of its parallel layout.
#include "executor/session.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "common/error.hpp"
#include "common/numeric.hpp"
#include "common/splitmix.hpp"
#include "executor/backend_cpu.hpp"
#include "executor/expert_dispatch.hpp"
#include "executor/paged_kv.hpp"

namespace moeplan::executor {

namespace {

// Brackets the ops issued in its scope in a timing span of the backend (Backend::span_begin), kept under `name`;
// Session::collect_op_times adds the spans' durations once the step's ops have finished. Nothing while the spans
// are off (a step being captured).
template <class Spans>
struct Timer {
  Backend& backend;
  Spans& spans;
  const char* name;
  std::size_t span = spans.on ? backend.span_begin() : 0;
  ~Timer() {
    if (!spans.on) return;
    backend.span_end(span);
    spans.list.emplace_back(span, name);
  }
};
template <class Spans>
Timer(Backend&, Spans&, const char*) -> Timer<Spans>;

std::size_t float_bytes(std::int64_t n) { return static_cast<std::size_t>(n) * sizeof(float); }

// Whether the paged decode kernel takes this shape (head size, query heads per KV head, mask).
bool decode_kernel_takes(const kernels::DecodeAttentionParams& p, const kernels::gpu::PagedKvLayout& layout) {
  try {
    kernels::check_decode_params(p, layout);
    return true;
  } catch (const std::invalid_argument&) {
    return false;
  }
}

}  // namespace

Session::Session(std::shared_ptr<const Model> model, kernels::CpuContext ctx, std::int64_t sequences, Communicator* comm,
                 Communicator* pipe)
    : Session(std::move(model), std::shared_ptr<Backend>(make_cpu_backend(ctx)), sequences, comm, pipe) {}

Session::Session(std::shared_ptr<const Model> model, std::shared_ptr<Backend> backend, std::int64_t sequences,
                 Communicator* comm, Communicator* pipe, std::optional<PagedKvPlan> paged_kv)
    : model_(std::move(model)), backend_(std::move(backend)), comm_(comm), pipe_(pipe),
      positions_(static_cast<std::size_t>(sequences), 0) {
  const Model::Sharding& sh = model_->sharding();
  if ((comm_ ? comm_->size() : 1) != sh.ranks() || (comm_ && comm_->rank() != sh.rank))
    throw std::logic_error("Session: the communicator's size and rank must be the model's tp * dp and rank");
  if (sh.pp() > 1 && (!pipe_ || pipe_->size() != sh.layout.gpus() || pipe_->rank() != sh.world_rank()))
    throw std::logic_error("Session: a pipeline stage needs the communicator of all pp * tp * dp ranks");
  if (sh.pp() == 1) pipe_ = nullptr;
  if (sh.tp() > 1) tp_comm_ = sh.dp() == 1 ? comm_ : &comm_->sub_group(sh.dp_index() * sh.tp(), sh.tp());
  kv_.resize(model_->layers.size());
  for (auto& layer : kv_) layer.resize(static_cast<std::size_t>(sequences));
  for (const auto& l : model_->layers)
    if (l.moe) routing_.emplace_back();
  if (!paged_kv) return;
  // The paged cache: every layer's pages come from one pool, so every layer must page the same row of Hkv * D values.
  const PagedKvPlan& plan = *paged_kv;
  if (plan.sequences != sequences || plan.layers.size() != model_->layers.size() ||
      (!plan.layers.empty() && plan.layers.front().layer != sh.first_layer))
    throw std::logic_error("Session: the paged KV plan must be for this rank's layers and sequences");
  const std::int64_t D = model_->config().head_dim, row = model_->layers.empty() ? D : model_->layers.front().k.rows;
  for (const auto& l : model_->layers)
    if (l.k.rows != row)
      throw InputError("a paged KV cache needs the same KV heads in every layer; run this model with a contiguous cache");
  const kernels::gpu::PagedKvLayout layout{plan.page_tokens, row / D, D,
                                           (plan.context_tokens + plan.page_tokens - 1) / plan.page_tokens};
  const std::int64_t pool = plan.pages_total * kernels::gpu::paged_kv_page_elems(layout);
  std::vector<std::int32_t> host_table(model_->layers.size() * static_cast<std::size_t>(sequences * layout.max_pages_per_seq), -1);
  DeviceArray<std::int32_t> device_table(*backend_, host_table.data(), static_cast<std::int64_t>(host_table.size()));
  paged_ = std::make_unique<PagedCache>(
      PagedCache{plan, PageTable(model_->config(), plan), layout, DeviceArray<std::uint16_t>(*backend_, pool),
                 DeviceArray<std::uint16_t>(*backend_, pool), std::move(host_table), std::move(device_table)});
}

std::optional<PagedKvPlan> device_kv_plan(Backend& backend, const Model& model, std::int64_t sequences,
                                          std::int64_t context_tokens, std::int64_t step_tokens) {
  if (backend.kind() == DeviceKind::cpu) return std::nullopt;
  PagedKvPlan plan = check_kv_fits_device(model.config(), model.sharding().layout, sequences, context_tokens,
                                          static_cast<double>(backend.free_memory_bytes()),
                                          static_cast<double>(model.weight_bytes()), model::KvDtype::bf16, step_tokens);
  plan.pages_total = std::min(plan.pages_total, plan.pages_needed);
  return plan;
}

void Session::upload_page_tables() {
  PagedCache& c = *paged_;
  const std::int64_t seqs = static_cast<std::int64_t>(positions_.size()), cols = c.layout.max_pages_per_seq;
  std::int64_t lo = static_cast<std::int64_t>(c.host_table.size()), hi = -1;  // the entries that changed: [lo, hi]
  auto set = [&](std::int64_t at, std::int32_t page) {
    c.host_table[static_cast<std::size_t>(at)] = page;
    lo = std::min(lo, at);
    hi = std::max(hi, at);
  };
  for (std::size_t li = 0; li < model_->layers.size(); ++li)
    for (std::int64_t s = 0; s < seqs; ++s) {
      // A table loses pages at its front and gains them at its back: only the ends change.
      const std::int64_t base = (static_cast<std::int64_t>(li) * seqs + s) * cols;
      const std::vector<std::int32_t>& pages = c.table.pages(li, s);
      const std::int64_t first = c.table.first_position(li, s) / c.plan.page_tokens,
                         n = static_cast<std::int64_t>(pages.size());
      for (std::int64_t j = std::min(first, cols) - 1; j >= 0 && c.host_table[static_cast<std::size_t>(base + j)] != -1; --j)
        set(base + j, -1);
      for (std::int64_t i = n - 1; i >= 0 && c.host_table[static_cast<std::size_t>(base + first + i)] != pages[static_cast<std::size_t>(i)]; --i)
        set(base + first + i, pages[static_cast<std::size_t>(i)]);
    }
  if (hi >= lo)
    backend_->upload(c.device_table.data() + lo, c.host_table.data() + lo, static_cast<std::size_t>(hi - lo + 1) * sizeof(std::int32_t));
}

const float* Session::resident(const std::vector<float>& host) {
  const kernels::WeightView view{kernels::WeightDtype::f32, host.data(), 1, static_cast<std::int64_t>(host.size()), nullptr};
  return static_cast<const float*>(backend_->resident(view).data);
}

void Session::fill_cache(std::int64_t context, std::int64_t reserve, std::uint64_t seed) {
  if (context < 0 || reserve < 0) throw InputError("fill_cache: context and reserve must be 0 or more");
  std::uint64_t state = seed;
  if (paged_) {
    fill_pages(context, state);
    return;
  }
  for (std::size_t li = 0; li < model_->layers.size(); ++li) {
    const std::int64_t row = model_->layers[li].k.rows;  // Hkv * D on this rank
    // only the positions the next query can see, as a real prefill leaves a chunked or sliding-window layer
    const std::int64_t first = first_visible_position(layer_spec(li), context), rows = context - first;
    for (KvRows& kv : kv_[li]) {
      kv.first = first;
      kv.rows = rows;
      for (auto* cache : {&kv.k, &kv.v}) {
        std::vector<float> host(static_cast<std::size_t>(rows * row));
        for (float& f : host) f = static_cast<float>(2.0 * splitmix64_unit(state) - 1.0);
        *cache = DeviceArray<float>(*backend_, (rows + reserve) * row);
        backend_->upload(cache->data(), host.data(), float_bytes(rows * row));
      }
    }
  }
  for (auto& p : positions_) p = context;
}

void Session::fill_pages(std::int64_t context, std::uint64_t& state) {
  PagedCache& c = *paged_;
  Backend& b = *backend_;
  const std::int64_t row = c.layout.kv_heads * c.layout.head_dim;
  // Every table grows to `context` keeping only the pages the next query (at `context`) sees, as the contiguous fill
  // keeps only its visible rows.
  for (std::int64_t s = 0; s < static_cast<std::int64_t>(positions_.size()); ++s) c.table.extend(s, context, context);
  upload_page_tables();
  // The same values in the same order as the contiguous cache's fill: layer by layer, sequence by sequence, K then V.
  for (std::size_t li = 0; li < model_->layers.size(); ++li) {
    const std::int64_t first = first_visible_position(layer_spec(li), context), rows = context - first;
    const std::int32_t* table = c.device_table.data() + static_cast<std::int64_t>(li) * c.plan.sequences * c.layout.max_pages_per_seq;
    for (std::int64_t s = 0; s < static_cast<std::int64_t>(positions_.size()); ++s) {
      std::vector<std::int64_t> seq_of(static_cast<std::size_t>(rows), s), pos_of(static_cast<std::size_t>(rows));
      for (std::int64_t r = 0; r < rows; ++r) pos_of[static_cast<std::size_t>(r)] = first + r;
      const DeviceArray<std::int64_t> seq_dev(b, seq_of.data(), rows), pos_dev(b, pos_of.data(), rows);
      for (DeviceArray<std::uint16_t>* pool : {&c.k, &c.v}) {
        std::vector<float> host(static_cast<std::size_t>(rows * row));
        for (float& f : host) f = static_cast<float>(2.0 * splitmix64_unit(state) - 1.0);
        const DeviceArray<float> values(b, host.data(), rows * row);
        b.paged_kv_write(c.layout, table, seq_dev.data(), pos_dev.data(), rows, values.data(), pool->data());
      }
    }
  }
  b.synchronize();
  for (auto& p : positions_) p = context;
}

const model::LayerSpec& Session::layer_spec(std::size_t li) const {
  return model_->config().layers[static_cast<std::size_t>(model_->sharding().first_layer) + li];
}

std::int64_t Session::cached_rows(std::size_t layer, std::int64_t seq) const {
  if (paged_)
    return paged_->table.pages(layer, seq).empty() ? 0 : paged_->table.length(seq) - paged_->table.first_position(layer, seq);
  return kv_.at(layer).at(static_cast<std::size_t>(seq)).rows;
}

std::int64_t Session::kv_cache_bytes() const {
  if (paged_) {  // BF16 values in the pages held
    std::int64_t values = 0;
    for (std::size_t li = 0; li < model_->layers.size(); ++li)
      for (std::int64_t s = 0; s < paged_->plan.sequences; ++s)
        values += 2 * static_cast<std::int64_t>(paged_->table.pages(li, s).size()) *
                  kernels::gpu::paged_kv_page_elems(paged_->layout);
    return values * static_cast<std::int64_t>(sizeof(std::uint16_t));
  }
  std::int64_t floats = 0;
  for (std::size_t li = 0; li < kv_.size(); ++li)
    for (const KvRows& kv : kv_[li]) floats += 2 * kv.rows * model_->layers[li].k.rows;
  return floats * static_cast<std::int64_t>(sizeof(float));
}

std::vector<float> Session::prefill(const std::vector<std::vector<std::int32_t>>& prompts, bool all_logits) {
  if (prompts.size() != positions_.size()) throw InputError("prefill: one prompt per sequence");
  std::vector<float> logits = run(prompts, all_logits);
  collect_op_times();
  return logits;
}

std::vector<float> Session::decode(const std::vector<std::int32_t>& tokens) {
  if (tokens.size() != positions_.size()) throw InputError("decode: one token per sequence");
  std::vector<std::vector<std::int32_t>> step;
  for (auto t : tokens) step.push_back({t});
  std::vector<float> logits = decode_capturable() ? decode_captured(step) : run(step, false);
  collect_op_times();
  return logits;
}

bool Session::decode_capturable() {
  if (!capture_decode_ || !backend_->can_capture() || !paged_ || comm_ || pipe_ || positions_.empty()) return false;
  if (!layers_capturable_) {
    bool ok = true;
    const auto seqs = static_cast<std::int64_t>(positions_.size());
    for (std::size_t li = 0; ok && li < model_->layers.size(); ++li) {
      const Model::Layer& L = model_->layers[li];
      ok = decode_kernel_takes(decode_params(attention_params(li), seqs), paged_->layout);
      if (!L.moe) continue;
      const auto experts = static_cast<std::int64_t>(L.expert_down.size());
      ok = ok && backend_->grouped_offsets_on_device(expert_group(L.expert_down).data(), experts);
      if (gate_up_group(L).empty())  // gate and up as two groups (a fused group reads its offsets on the device)
        for (const auto* group : {&L.expert_gate, &L.expert_up})
          ok = ok && backend_->grouped_offsets_on_device(expert_group(*group).data(), experts);
    }
    layers_capturable_ = ok;
  }
  return *layers_capturable_;
}

std::vector<float> Session::decode_captured(const std::vector<std::vector<std::int32_t>>& tokens) {
  if (!graph_ && !decode_warmed_) {  // op by op first: weights resident, scratch at this step's sizes
    decode_warmed_ = true;
    return run(tokens, false);
  }
  spans_.list.clear();
  backend_->spans_clear();
  Step step = make_step(tokens);
  if (graph_) {
    graph_->step.ids = std::move(step.ids);
    graph_->step.pos_of = std::move(step.pos_of);
    graph_->step.seq_of = std::move(step.seq_of);
    graph_->step.lens_of = std::move(step.lens_of);
    graph_->step.qscale_of = std::move(step.qscale_of);
    upload_step(graph_->step, false);
  } else if (!capture(step)) {  // the step op by op; later steps too (capture_error says why)
    return run_step(tokens, step, false);
  }
  {
    Timer tm{*backend_, spans_, "decode.graph"};
    graph_->graph->replay();
  }
  ++decode_replays_;
  for (auto& p : positions_) ++p;
  const Step& s = graph_->step;
  const std::int64_t T = s.tokens(), K = model_->config().experts_per_token;
  std::vector<std::int32_t> ids(static_cast<std::size_t>(graph_->routing.size()));
  backend_->download(ids.data(), graph_->routing.data(), graph_->routing.bytes());
  for (std::size_t m = 0; m < routing_.size(); ++m)
    routing_[m].insert(routing_[m].end(), ids.begin() + static_cast<std::ptrdiff_t>(m) * T * K,
                       ids.begin() + static_cast<std::ptrdiff_t>(m + 1) * T * K);
  std::vector<float> logits(static_cast<std::size_t>(graph_->logits.size()));
  backend_->download(logits.data(), graph_->logits.data(), graph_->logits.bytes());
  return logits;
}

bool Session::capture(Step& step) {
  const Model& M = *model_;
  Backend& b = *backend_;
  const std::int64_t T = step.tokens(), H = M.config().hidden, K = M.config().experts_per_token;
  auto g = std::make_unique<DecodeGraph>();
  upload_step(step, true);
  g->step = std::move(step);
  g->x = DeviceArray<float>(b, T * H);
  g->logits = DeviceArray<float>(b, T * M.lm_head.rows);
  g->routing = DeviceArray<std::int32_t>(b, static_cast<std::int64_t>(routing_.size()) * T * K);
  g->step.captured = true;
  g->step.routing_out = g->routing.data();
  std::vector<std::int64_t> rows(static_cast<std::size_t>(T));
  for (std::int64_t t = 0; t < T; ++t) rows[static_cast<std::size_t>(t)] = t;
  spans_.on = false;
  try {
    b.begin_capture();
    forward(g->step, g->x.data());
    head(g->x.data(), rows, g->logits.data());
    g->graph = b.end_capture();
  } catch (const std::exception& e) {
    spans_.on = true;
    try {
      b.end_capture();
    } catch (...) {  // ending the capture failed too: the first error is the one to report
    }
    capture_error_ = e.what();
    capture_decode_ = false;
    step = std::move(g->step);  // back to an op-by-op step, its arrays uploaded
    step.captured = false;
    step.routing_out = nullptr;
    return false;
  }
  spans_.on = true;
  graph_ = std::move(g);
  return true;
}

void Session::collect_op_times() {
  for (const auto& [span, name] : spans_.list) {
    times_.seconds[name] += backend_->span_seconds(span);
    ++times_.calls[name];
  }
  spans_.list.clear();
  backend_->spans_clear();
}

Session::Step Session::make_step(const std::vector<std::vector<std::int32_t>>& tokens) {
  const std::int64_t V = model_->config().vocab;
  const RuntimeParams& P = model_->params();
  Step step;
  for (std::size_t s = 0; s < tokens.size(); ++s)
    for (std::size_t i = 0; i < tokens[s].size(); ++i) {
      if (tokens[s][i] < 0 || tokens[s][i] >= V)
        throw InputError("token id " + std::to_string(tokens[s][i]) + " is outside the vocabulary of " + std::to_string(V));
      const std::int64_t pos = positions_[s] + static_cast<std::int64_t>(i);
      step.seq_of.push_back(static_cast<std::int64_t>(s));
      step.pos_of.push_back(pos);
      step.ids.push_back(tokens[s][i]);
      step.lens_of.push_back(static_cast<std::int32_t>(pos + 1));
      if (P.temperature_tuning)  // Llama 4 NoPE layers scale the queries by position
        step.qscale_of.push_back(static_cast<float>(
            1.0 + P.attn_scale * std::log(1.0 + std::floor((to_double(pos) + 1.0) / P.floor_scale))));
    }
  step.prefill = step.tokens() > static_cast<std::int64_t>(positions_.size()) ||
                 std::adjacent_find(step.seq_of.begin(), step.seq_of.end()) != step.seq_of.end();
  if (paged_) {  // pages for the new positions (those no later query sees are freed), the tables on the backend
    for (std::size_t s = 0; s < tokens.size(); ++s)
      if (!tokens[s].empty()) paged_->table.extend(static_cast<std::int64_t>(s), positions_[s] + static_cast<std::int64_t>(tokens[s].size()));
    upload_page_tables();
  }
  return step;
}

void Session::upload_step(Step& step, bool fresh) {
  auto put = [&](auto& array, const auto& host) {
    const auto n = static_cast<std::int64_t>(host.size());
    if (fresh)
      array = std::decay_t<decltype(array)>(*backend_, host.data(), n);
    else if (n > 0)
      backend_->upload(array.data(), host.data(), array.bytes());
  };
  put(step.pos, step.pos_of);
  put(step.token_ids, step.ids);
  put(step.qscale, step.qscale_of);
  if (!paged_) return;
  put(step.seq, step.seq_of);
  put(step.lens, step.lens_of);
}

std::vector<float> Session::run(const std::vector<std::vector<std::int32_t>>& tokens, bool all_logits) {
  spans_.list.clear();  // spans of a step that threw before its times were collected
  backend_->spans_clear();
  Step step = make_step(tokens);
  upload_step(step, true);
  return run_step(tokens, step, all_logits);
}

std::vector<float> Session::run_step(const std::vector<std::vector<std::int32_t>>& tokens, const Step& step,
                                     bool all_logits) {
  const Model& M = *model_;
  const std::int64_t H = M.config().hidden, V = M.config().vocab;
  const std::int64_t T = step.tokens();
  const Model::Sharding& sh = M.sharding();
  DeviceArray<float> x(*backend_, T * H);  // [T, H] with the step's tokens grouped by sequence
  if (T == 0 && !pipe_) {  // a data-parallel rank with no sequences still joins every MoE layer's all-to-all
    for (std::size_t li = 0; li < M.layers.size(); ++li) layer_forward(li, x.data(), step);
    return {};
  }
  forward(step, x.data());
  for (std::size_t s = 0; s < tokens.size(); ++s) positions_[s] += static_cast<std::int64_t>(tokens[s].size());

  // Rows whose logits are wanted: all, or each sequence's last token.
  std::vector<std::int64_t> rows;
  for (std::int64_t t = 0; t < T; ++t)
    if (all_logits || t + 1 == T || step.seq_of[static_cast<std::size_t>(t + 1)] != step.seq_of[static_cast<std::size_t>(t)])
      rows.push_back(t);
  if (!sh.last_stage()) {  // on to the next stage; the logits come back from the last one
    {
      Timer tm{*backend_, spans_, "pp.send"};
      backend_->synchronize();  // a communicator runs on its own stream (NCCL): the data must be complete
      pipe_->send(sh.rank_in_stage(sh.stage + 1), x.data(), T * H);
    }
    DeviceArray<float> logits(*backend_, static_cast<std::int64_t>(rows.size()) * V);
    pipe_->recv(sh.rank_in_stage(sh.pp() - 1), logits.data(), logits.size());
    std::vector<float> host(static_cast<std::size_t>(logits.size()));
    backend_->download(host.data(), logits.data(), logits.bytes());
    return host;
  }
  return return_logits(logits_of(x.data(), rows));
}

void Session::forward(const Step& step, float* x) {
  embed_tokens(step, x);
  for (std::size_t li = 0; li < model_->layers.size(); ++li) layer_forward(li, x, step);
}

void Session::embed_tokens(const Step& step, float* x) {
  const Model& M = *model_;
  const Model::Sharding& sh = M.sharding();
  const std::int64_t T = step.tokens(), H = M.config().hidden;
  if (!sh.first_stage()) {  // the hidden states from the rank at this position in the stage before
    pipe_->recv(sh.rank_in_stage(sh.stage - 1), x, T * H);
    return;
  }
  {
    // This rank's vocabulary rows (all of them on one rank); the other ids' rows stay zero until the
    // tensor-parallel all-reduce adds the rank that holds them.
    Timer tm{*backend_, spans_, "embed"};
    backend_->embed(resident(M.embed), sh.vocab_begin, step.token_ids.data(), T, x);
  }
  if (tp_comm_ && T > 0) {
    Timer tm{*backend_, spans_, "embed.all_reduce"};
    backend_->synchronize();
    tp_comm_->all_reduce_sum(x, T * H);
  }
}

void Session::head(const float* x, const std::vector<std::int64_t>& rows, float* mine) {
  const Model& M = *model_;
  const std::int64_t H = M.config().hidden, N = static_cast<std::int64_t>(rows.size());
  DeviceArray<float> h(*backend_, N * H);
  {
    Timer tm{*backend_, spans_, "final_norm"};
    const float* w = resident(M.final_norm);
    for (std::int64_t r = 0; r < N; ++r)
      backend_->rmsnorm(x + rows[static_cast<std::size_t>(r)] * H, w, h.data() + r * H, 1, H, M.params().rms_eps);
  }
  Timer tm{*backend_, spans_, "lm_head"};
  backend_->matmul(h.data(), N, resident(M.lm_head), mine, false);
}

std::vector<float> Session::logits_of(const float* x, const std::vector<std::int64_t>& rows) {
  const Model& M = *model_;
  const std::int64_t V = M.config().vocab;
  const std::int64_t N = static_cast<std::int64_t>(rows.size()), Vr = M.lm_head.rows;
  // This rank's vocabulary slice of the logits: [N, Vr], Vr = lm_head.rows (V on one rank).
  DeviceArray<float> mine(*backend_, N * Vr);
  head(x, rows, mine.data());
  if (!tp_comm_) {
    std::vector<float> logits(static_cast<std::size_t>(N * Vr));
    backend_->download(logits.data(), mine.data(), mine.bytes());
    return logits;
  }
  // All-gather the slices of the tp ranks as [N, slice] blocks, slice = ceil(V / tp) (a rank holding one row fewer
  // leaves its last column unused), then place rank r's columns at its vocabulary rows: logits [N, V].
  Timer tm{*backend_, spans_, "lm_head.all_gather"};
  const int tp = M.sharding().tp();
  const std::int64_t slice = (V + tp - 1) / tp;
  DeviceArray<float> block(*backend_, N * slice), gathered(*backend_, tp * N * slice);
  for (std::int64_t n = 0; n < N; ++n) backend_->copy(block.data() + n * slice, mine.data() + n * Vr, float_bytes(Vr));
  backend_->synchronize();
  tp_comm_->all_gather(block.data(), N * slice, gathered.data());
  std::vector<float> all(static_cast<std::size_t>(gathered.size())), logits(static_cast<std::size_t>(N * V));
  backend_->download(all.data(), gathered.data(), gathered.bytes());
  for (int r = 0; r < tp; ++r) {
    const auto [r0, r1] = vocab_rows(V, tp, r);
    for (std::int64_t n = 0; n < N; ++n) std::copy_n(all.data() + (r * N + n) * slice, r1 - r0, logits.data() + n * V + r0);
  }
  return logits;
}

std::vector<float> Session::return_logits(std::vector<float> logits) {
  const Model::Sharding& sh = model_->sharding();
  if (!pipe_) return logits;
  const DeviceArray<float> sent(*backend_, logits.data(), static_cast<std::int64_t>(logits.size()));
  backend_->synchronize();
  for (int stage = 0; stage + 1 < sh.pp(); ++stage) pipe_->send(sh.rank_in_stage(stage), sent.data(), sent.size());
  return logits;
}

void Session::layer_forward(std::size_t li, float* x, const Step& step) {
  const Model::Layer& L = model_->layers[li];
  if (step.tokens() == 0) {  // a replica with no sequences: only the all-to-all over all ranks involves it
    if (L.moe && model_->sharding().dp() > 1) moe_all_to_all(L, nullptr, nullptr, nullptr, 0, nullptr);
    return;
  }
  attention_block(li, x, step);
  mlp_block(li, x, step);
}

void Session::attention_block(std::size_t li, float* x, const Step& step) {
  const Model& M = *model_;
  const RuntimeParams& P = M.params();
  const Model::Layer& L = M.layers[li];
  const model::LayerSpec& spec = layer_spec(li);
  const std::int64_t T = step.tokens(), H = M.config().hidden;
  const std::int64_t D = M.config().head_dim, Hq = L.q.rows / D, Hkv = L.k.rows / D;  // heads on this rank
  Backend& b = *backend_;
  DeviceArray<float> xn(b, T * H);
  {
    Timer tm{b, spans_, "attn.norm"};
    b.rmsnorm(x, resident(L.input_norm), xn.data(), T, H, P.rms_eps);
  }
  DeviceArray<float> q(b, T * Hq * D), k(b, T * Hkv * D), v(b, T * Hkv * D);
  {
    Timer tm{b, spans_, "attn.qkv"};
    b.matmul(xn.data(), T, resident(L.q), q.data(), false);
    b.matmul(xn.data(), T, resident(L.k), k.data(), false);
    b.matmul(xn.data(), T, resident(L.v), v.data(), false);
  }
  if (P.qk_norm_weighted_before_rope) {  // Qwen3: RMSNorm with weights over head_dim, before RoPE
    Timer tm{b, spans_, "attn.qk_norm"};
    b.rmsnorm(q.data(), resident(L.q_norm), q.data(), T * Hq, D, P.rms_eps);
    b.rmsnorm(k.data(), resident(L.k_norm), k.data(), T * Hkv, D, P.rms_eps);
  }
  if (spec.rope) {
    Timer tm{b, spans_, "attn.rope"};
    b.rope(q.data(), T, Hq, D, step.pos.data(), resident(P.inv_freq), P.rope_layout);
    b.rope(k.data(), T, Hkv, D, step.pos.data(), resident(P.inv_freq), P.rope_layout);
  }
  if (P.qk_norm_weightless_after_rope && spec.rope) {  // Llama 4: weightless L2 norm after RoPE, RoPE layers only
    Timer tm{b, spans_, "attn.qk_norm"};
    b.rms_normalize(q.data(), q.data(), T * Hq, D, P.rms_eps);
    b.rms_normalize(k.data(), k.data(), T * Hkv, D, P.rms_eps);
  }
  DeviceArray<float> attn(b, q.size());
  attend(li, q.data(), k.data(), v.data(), attn.data(), step);
  DeviceArray<float> o(b, T * H);
  {
    Timer tm{b, spans_, "attn.o"};
    b.matmul(attn.data(), T, resident(L.o), o.data(), false);
  }
  if (tp_comm_) {  // each rank of the replica holds a partial sum over its heads
    Timer tm{b, spans_, "attn.all_reduce"};
    b.synchronize();
    tp_comm_->all_reduce_sum(o.data(), T * H);
  }
  b.add(x, o.data(), x, T * H);
}

kernels::AttentionParams Session::attention_params(std::size_t li) const {
  const model::LayerSpec& spec = layer_spec(li);
  const std::int64_t D = model_->config().head_dim;
  kernels::AttentionParams shared;
  shared.q_heads = model_->layers[li].q.rows / D;  // heads on this rank
  shared.kv_heads = model_->layers[li].k.rows / D;
  shared.head_dim = D;
  shared.scale = static_cast<float>(1.0 / std::sqrt(to_double(D)));
  if (spec.attention == model::AttentionKind::chunked) {
    shared.mask = kernels::AttentionMask::chunked;
    shared.mask_tokens = spec.attention_window_tokens;
  } else if (spec.attention == model::AttentionKind::sliding) {
    shared.mask = kernels::AttentionMask::sliding_window;
    shared.mask_tokens = spec.attention_window_tokens;
  }
  return shared;
}

kernels::DecodeAttentionParams Session::decode_params(const kernels::AttentionParams& shared, std::int64_t seqs) {
  kernels::DecodeAttentionParams dp;
  dp.seqs = seqs;
  dp.q_heads = shared.q_heads;
  dp.kv_heads = shared.kv_heads;
  dp.head_dim = shared.head_dim;
  dp.scale = shared.scale;
  dp.mask = shared.mask;
  dp.chunk_tokens = shared.mask == kernels::AttentionMask::chunked ? shared.mask_tokens : 0;
  dp.kv_dtype = kernels::KvPageDtype::bf16;
  return dp;
}

void Session::attend(std::size_t li, float* q, const float* k, const float* v, float* attn, const Step& step) {
  const model::LayerSpec& spec = layer_spec(li);
  const kernels::AttentionParams shared = attention_params(li);  // what every sequence's call shares
  const std::int64_t T = step.tokens(), Hq = shared.q_heads, D = shared.head_dim, row = shared.kv_heads * D;
  Backend& b = *backend_;
  Timer tm{b, spans_, step.prefill ? "attn.prefill" : "attn.decode"};
  if (model_->params().temperature_tuning && !spec.rope)  // Llama 4 NoPE layers: scale queries by position
    b.scale_rows(q, T, Hq * D, step.qscale.data());
  if (paged_) {
    attend_paged(li, shared, q, k, v, attn, step);
    return;
  }
  step.for_each_sequence([&](std::int64_t s, std::int64_t t0, std::int64_t t1) {
    KvRows& kv = kv_[li][static_cast<std::size_t>(s)];
    // Append rows [t0, t1) to the cache, growing it geometrically.
    if ((kv.rows + t1 - t0) * row > kv.k.size()) {
      const std::int64_t capacity = std::max(kv.rows + t1 - t0, 2 * kv.k.size() / std::max<std::int64_t>(row, 1));
      for (auto* cache : {&kv.k, &kv.v}) {
        DeviceArray<float> grown(b, capacity * row);
        b.copy(grown.data(), cache->data(), float_bytes(kv.rows * row));
        *cache = std::move(grown);
      }
    }
    b.copy(kv.k.data() + kv.rows * row, k + t0 * row, float_bytes((t1 - t0) * row));
    b.copy(kv.v.data() + kv.rows * row, v + t0 * row, float_bytes((t1 - t0) * row));
    kv.rows += t1 - t0;
    kernels::AttentionParams ap = shared;
    ap.q_tokens = t1 - t0;
    ap.kv_tokens = kv.rows;
    ap.kv_first_pos = kv.first;
    b.attention(ap, q + t0 * Hq * D, step.pos.data() + t0, kv.k.data(), kv.v.data(), attn + t0 * Hq * D);
    // Drop the rows no later query can see once they outnumber the rows still needed (each row is moved at most
    // once on average; a sliding-window cache holds at most 2 W rows, a chunked one at most its chunk).
    const std::int64_t dead = first_visible_position(spec, step.pos_of[static_cast<std::size_t>(t1 - 1)] + 1) - kv.first;
    if (dead > 0 && dead >= ap.kv_tokens - dead) {
      b.copy(kv.k.data(), kv.k.data() + dead * row, float_bytes((kv.rows - dead) * row));
      b.copy(kv.v.data(), kv.v.data() + dead * row, float_bytes((kv.rows - dead) * row));
      kv.rows -= dead;
      kv.first += dead;
    }
  });
}

void Session::attend_paged(std::size_t li, const kernels::AttentionParams& shared, const float* q, const float* k,
                           const float* v, float* attn, const Step& step) {
  PagedCache& c = *paged_;
  Backend& b = *backend_;
  const model::LayerSpec& spec = layer_spec(li);
  const std::int64_t T = step.tokens(), seqs = static_cast<std::int64_t>(positions_.size());
  const std::int64_t row = c.layout.kv_heads * c.layout.head_dim, q_row = shared.q_heads * shared.head_dim;
  const std::int32_t* table = c.device_table.data() + static_cast<std::int64_t>(li) * seqs * c.layout.max_pages_per_seq;
  // 1. the step's keys and values into their slots
  b.paged_kv_write(c.layout, table, step.seq.data(), step.pos.data(), T, k, c.k.data());
  b.paged_kv_write(c.layout, table, step.seq.data(), step.pos.data(), T, v, c.v.data());
  // 2. a decode step (token t is sequence t's): every query in one call on the pages, where the decode kernel takes
  // the shape; a captured step plans its split for the longest context the cache takes
  const kernels::DecodeAttentionParams dp = decode_params(shared, seqs);
  if (!step.prefill && T == seqs && decode_kernel_takes(dp, c.layout)) {
    std::int64_t max_keys = step.captured ? c.plan.context_tokens : 1;
    for (const std::int64_t p : step.pos_of) max_keys = std::max(max_keys, p + 1 - first_visible_position(spec, p));
    b.paged_attention_decode(dp, c.layout, q, step.lens.data(), table, c.k.data(), c.v.data(), max_keys, attn);
    return;
  }
  // 3. otherwise each sequence's visible rows, gathered from the pages, through Backend::attention
  step.for_each_sequence([&](std::int64_t s, std::int64_t t0, std::int64_t t1) {
    const std::int64_t first = first_visible_position(spec, step.pos_of[static_cast<std::size_t>(t0)]);
    const std::int64_t count = step.pos_of[static_cast<std::size_t>(t1 - 1)] + 1 - first;
    DeviceArray<float> keys(b, count * row), values(b, count * row);  // [count, Hkv, D]
    b.paged_kv_gather(c.layout, table, s, first, count, c.k.data(), keys.data());
    b.paged_kv_gather(c.layout, table, s, first, count, c.v.data(), values.data());
    kernels::AttentionParams ap = shared;
    ap.q_tokens = t1 - t0;
    ap.kv_tokens = count;
    ap.kv_first_pos = first;
    b.attention(ap, q + t0 * q_row, step.pos.data() + t0, keys.data(), values.data(), attn + t0 * q_row);
  });
}

void Session::mlp_block(std::size_t li, float* x, const Step& step) {
  const Model& M = *model_;
  const Model::Layer& L = M.layers[li];
  const std::int64_t T = step.tokens(), H = M.config().hidden;
  Backend& b = *backend_;
  DeviceArray<float> xn(b, T * H), out(b, T * H);
  {
    Timer tm{b, spans_, "mlp.norm"};
    b.rmsnorm(x, resident(L.post_norm), xn.data(), T, H, M.params().rms_eps);
  }
  if (L.moe)
    moe(li, xn.data(), step, out.data());
  else
    swiglu(L.dense_gate, L.dense_up, L.dense_down, "mlp.gate_up", "mlp.act", "mlp.down", xn.data(), T, out.data());
  if (tp_comm_) {  // partial sums over this rank's MLP or shared-expert columns, expert pieces and tokens
    Timer tm{b, spans_, L.moe ? "moe.all_reduce" : "mlp.all_reduce"};
    b.synchronize();
    tp_comm_->all_reduce_sum(out.data(), T * H);
  }
  b.add(x, out.data(), x, T * H);
}

void Session::swiglu(const Model::Matrix& g, const Model::Matrix& u, const Model::Matrix& dn, const char* gu_name,
                     const char* act_name, const char* down_name, const float* xn, std::int64_t T, float* out) {
  Backend& b = *backend_;
  const std::int64_t I = g.rows;
  DeviceArray<float> gv(b, T * I), uv(b, T * I);
  {
    Timer tm{b, spans_, gu_name};
    b.matmul(xn, T, resident(g), gv.data(), false);
    b.matmul(xn, T, resident(u), uv.data(), false);
  }
  {
    Timer tm{b, spans_, act_name};
    b.silu_mul(gv.data(), uv.data(), gv.data(), T * I);
  }
  Timer tm{b, spans_, down_name};
  b.matmul(gv.data(), T, resident(dn), out, true);
}

void Session::moe(std::size_t li, const float* xn, const Step& step, float* out) {
  const Model& M = *model_;
  const Model::Layer& L = M.layers[li];
  const std::int64_t T = step.tokens(), E = M.config().num_experts, K = M.config().experts_per_token;
  const std::int64_t H = M.config().hidden;
  Backend& b = *backend_;
  DeviceArray<float> logits(b, T * E);
  {
    Timer tm{b, spans_, "moe.router"};
    b.matmul(xn, T, resident(L.router), logits.data(), false);
  }
  std::size_t moe_index = 0;
  for (std::size_t j = 0; j < li; ++j) moe_index += M.layers[j].moe ? 1 : 0;
  // ids, weights: [T, K]; read back to the host, which builds the permutation by expert, unless the step is captured
  // (the backend builds it).
  DeviceArray<std::int32_t> ids_dev(b, T * K);
  DeviceArray<float> weights_dev(b, T * K);
  std::vector<std::int32_t> ids(step.captured ? 0 : static_cast<std::size_t>(T * K));
  std::vector<float> weights(ids.size());
  {
    Timer tm{b, spans_, "moe.topk"};
    b.router_topk(logits.data(), T, E, K, M.params().scoring, ids_dev.data(), weights_dev.data());
    if (!step.captured) {
      b.download(ids.data(), ids_dev.data(), ids_dev.bytes());
      b.download(weights.data(), weights_dev.data(), weights_dev.bytes());
    }
  }
  if (step.captured) {
    moe_captured(L, moe_index, xn, step, ids_dev.data(), weights_dev.data(), out);
    return;
  }
  routing_[moe_index].insert(routing_[moe_index].end(), ids.begin(), ids.end());
  if (!L.shared_gate.data.empty())
    swiglu(L.shared_gate, L.shared_up, L.shared_down, "moe.shared.gate_up", "moe.shared.act", "moe.shared.down", xn, T, out);
  if (M.sharding().dp() > 1) {
    // The tp ranks of a replica hold the same tokens: each sends its share [t0, t1) to the experts' ranks, and the
    // all-reduce after the MLP completes every token.
    const int tp = M.sharding().tp(), tp_index = M.sharding().tp_index();
    const std::int64_t t0 = T * tp_index / tp, t1 = T * (tp_index + 1) / tp;
    moe_all_to_all(L, xn + t0 * H, ids.data() + t0 * K, weights.data() + t0 * K, t1 - t0, out + t0 * H);
    return;
  }
  local_experts(L, kernels::build_expert_dispatch(ids.data(), weights.data(), T, K, E), xn, out);
}

void Session::moe_captured(const Model::Layer& L, std::size_t moe_index, const float* xn, const Step& step,
                           const std::int32_t* ids, const float* weights, float* out) {
  const Model& M = *model_;
  Backend& b = *backend_;
  const std::int64_t T = step.tokens(), E = M.config().num_experts, K = M.config().experts_per_token;
  b.copy(step.routing_out + static_cast<std::int64_t>(moe_index) * T * K, ids,
         static_cast<std::size_t>(T * K) * sizeof(std::int32_t));
  if (!L.shared_gate.data.empty())
    swiglu(L.shared_gate, L.shared_up, L.shared_down, "moe.shared.gate_up", "moe.shared.act", "moe.shared.down", xn, T,
           out);
  // One rank holds every expert: the rows are all T * K of them.
  DeviceArray<std::int64_t> offsets(b, E + 1), row_token(b, T * K);
  DeviceArray<float> row_weight(b, T * K);
  b.expert_dispatch(ids, weights, T, K, E, offsets.data(), row_token.data(), row_weight.data());
  const bool llama4 = M.params().llama4;  // the router weight scales the expert input (Llama 4) or output
  expert_ffn(L,
             ExpertRows{nullptr, offsets.data(), T * K, row_token.data(), llama4 ? row_weight.data() : nullptr,
                        llama4 ? nullptr : row_weight.data()},
             xn, out);
}

void Session::local_experts(const Model::Layer& L, const kernels::ExpertDispatch& dispatch, const float* xn, float* out) {
  // This rank's experts [e0, e1): their rows are contiguous in the dispatch (rows are sorted by expert).
  const std::int64_t e0 = model_->sharding().expert_begin, e1 = e0 + static_cast<std::int64_t>(L.expert_gate.size());
  const std::int64_t r0 = dispatch.expert_offsets[static_cast<std::size_t>(e0)];
  std::vector<std::int64_t> offsets(dispatch.expert_offsets.begin() + e0, dispatch.expert_offsets.begin() + e1 + 1);
  for (auto& off : offsets) off -= r0;
  // Llama 4 scales the expert input by the router weight; Qwen3 and Mixtral scale the output.
  const bool llama4 = model_->params().llama4;
  const float* row_weight = dispatch.row_weight.data() + r0;
  routed_experts(L, offsets.data(), offsets.back(), dispatch.row_token.data() + r0, llama4 ? row_weight : nullptr,
                 llama4 ? nullptr : row_weight, xn, out);
}

void Session::routed_experts(const Model::Layer& L, const std::int64_t* offsets, std::int64_t R, const std::int64_t* row_token,
                             const float* in_scale, const float* out_scale, const float* x, float* y) {
  if (R == 0) return;
  Backend& b = *backend_;
  const DeviceArray<std::int64_t> tokens(b, row_token, R);
  DeviceArray<float> in_scales, out_scales;
  if (in_scale) in_scales = DeviceArray<float>(b, in_scale, R);
  if (out_scale) out_scales = DeviceArray<float>(b, out_scale, R);
  expert_ffn(L,
             ExpertRows{offsets, nullptr, R, tokens.data(), in_scale ? in_scales.data() : nullptr,
                        out_scale ? out_scales.data() : nullptr},
             x, y);
}

std::vector<kernels::WeightView> Session::expert_group(const std::vector<Model::Matrix>& experts) {
  std::vector<kernels::WeightView> hosts;
  for (const auto& m : experts) hosts.push_back(m.view());
  return backend_->resident_group(hosts.data(), hosts.size());
}

std::vector<kernels::WeightView> Session::gate_up_group(const Model::Layer& L) {
  std::vector<kernels::WeightView> gate, up;
  for (const auto& m : L.expert_gate) gate.push_back(m.view());
  for (const auto& m : L.expert_up) up.push_back(m.view());
  return backend_->resident_gate_up(gate.data(), up.data(), gate.size());
}

void Session::expert_ffn(const Model::Layer& L, const ExpertRows& rows, const float* x, float* y) {
  const std::int64_t R = rows.rows;
  if (R == 0) return;
  Backend& b = *backend_;
  const std::int64_t H = model_->config().hidden, I = L.expert_gate.front().rows;
  const std::int64_t experts = static_cast<std::int64_t>(L.expert_gate.size());
  // y_sorted = x_sorted times one projection of the experts, laid out as one group, by the offsets where they are.
  auto grouped = [&](const std::vector<Model::Matrix>& ms, const float* x_sorted, float* y_sorted) {
    const auto views = expert_group(ms);
    if (rows.host_offsets)
      b.grouped_matmul(x_sorted, rows.host_offsets, experts, views.data(), y_sorted);
    else
      b.grouped_matmul_device(x_sorted, rows.device_offsets, R, experts, views.data(), y_sorted);
  };
  // xs, ys: [R, H]; gs, us: [R, I] (I: this rank's piece of the expert intermediate)
  // gate and up as one group, where the backend has one
  const std::vector<kernels::WeightView> fused = gate_up_group(L);
  DeviceArray<float> xs(b, R * H), gs(b, R * I), us(b, fused.empty() ? R * I : 0), ys(b, R * H);
  {
    Timer tm{b, spans_, "moe.experts.gate_up"};
    b.permute(x, H, rows.row_token, rows.in_scale, R, xs.data());
    if (!fused.empty()) {  // the activation too, in the GEMM's epilogue
      b.grouped_swiglu(xs.data(), rows.host_offsets, rows.device_offsets, R, experts, fused.data(), gs.data());
    } else {
      grouped(L.expert_gate, xs.data(), gs.data());
      grouped(L.expert_up, xs.data(), us.data());
    }
  }
  if (fused.empty()) {
    Timer tm{b, spans_, "moe.experts.act"};
    b.silu_mul(gs.data(), us.data(), gs.data(), R * I);
  }
  Timer tm{b, spans_, "moe.experts.down"};
  grouped(L.expert_down, gs.data(), ys.data());
  b.unpermute_add(ys.data(), H, rows.row_token, rows.out_scale, R, y);
}

void Session::moe_all_to_all(const Model::Layer& L, const float* xn, const std::int32_t* ids, const float* weights,
                             std::int64_t T, float* out) {
  const Model& M = *model_;
  Backend& b = *backend_;
  const std::int64_t H = M.config().hidden, E = M.config().num_experts, K = M.config().experts_per_token;
  const bool llama4 = M.params().llama4;
  const std::size_t ranks = static_cast<std::size_t>(comm_->size());
  // Rank j = group * moe_tp + piece holds piece `piece` of experts [group * per, (group + 1) * per).
  const std::size_t moe_tp = static_cast<std::size_t>(M.sharding().moe_tp()), groups = ranks / moe_tp;
  const std::int64_t per = static_cast<std::int64_t>(L.expert_gate.size());
  const kernels::ExpertDispatch dispatch = kernels::build_expert_dispatch(ids, weights, T, K, E);
  // send[j], j = g * moe_tp + piece: [per] row counts of group g's experts (as floats, exact below 2^24), then their
  // rows [n, H] of xn (Llama 4: already scaled by the router weight, which scales the expert input); every piece of
  // a group gets the same rows.
  std::vector<std::vector<float>> recv;
  {
    Timer tm{b, spans_, "moe.dispatch"};
    const std::int64_t rows = static_cast<std::int64_t>(dispatch.row_token.size());
    const DeviceArray<std::int64_t> tokens(b, dispatch.row_token.data(), rows);
    const DeviceArray<float> scales(b, dispatch.row_weight.data(), rows);
    DeviceArray<float> permuted(b, rows * H);
    if (rows > 0) b.permute(xn, H, tokens.data(), llama4 ? scales.data() : nullptr, rows, permuted.data());
    std::vector<std::vector<float>> send(ranks);
    for (std::size_t g = 0; g < groups; ++g) {
      const auto [rb, re] = group_rows(dispatch, per, static_cast<std::int64_t>(g));
      const std::vector<std::int64_t> counts = group_expert_counts(dispatch, per, static_cast<std::int64_t>(g));
      std::vector<float>& buf = send[g * moe_tp];
      buf.resize(static_cast<std::size_t>(per + (re - rb) * H));
      for (std::int64_t e = 0; e < per; ++e) buf[static_cast<std::size_t>(e)] = static_cast<float>(counts[static_cast<std::size_t>(e)]);
      b.download(buf.data() + per, permuted.data() + rb * H, float_bytes((re - rb) * H));
      for (std::size_t p = 1; p < moe_tp; ++p) send[g * moe_tp + p] = buf;
    }
    recv = comm_->all_to_all(send);
  }
  // The received rows, source rank by source rank: in [R, H]; rank r's rows start at row first_of[r], expert by
  // expert. Grouped by this rank's expert (rows from rank 0, then rank 1, ... for each expert), grouped row i is
  // in[row_of[i]].
  std::vector<std::vector<std::int64_t>> counts(ranks);
  for (std::size_t r = 0; r < ranks; ++r)
    for (std::int64_t e = 0; e < per; ++e) counts[r].push_back(static_cast<std::int64_t>(recv[r][static_cast<std::size_t>(e)]));
  const ReceivedRows received = group_by_local_expert(counts);
  const std::vector<std::int64_t>& first_of = received.first_of;
  const std::int64_t R = received.rows();
  DeviceArray<float> in(b, R * H), res(b, R * H);
  for (std::size_t r = 0; r < ranks; ++r)
    b.upload(in.data() + first_of[r] * H, recv[r].data() + per, float_bytes((first_of[r + 1] - first_of[r]) * H));
  // res [R, H]: each received row's result (this rank's piece of its expert) in the order it arrived.
  routed_experts(L, received.expert_offsets.data(), R, received.row_of.data(), nullptr, nullptr, in.data(), res.data());
  // Send every row's result back to the rank it came from, in the order it came.
  Timer tm{b, spans_, "moe.combine"};
  std::vector<std::vector<float>> back(ranks);
  for (std::size_t r = 0; r < ranks; ++r) {
    back[r].resize(static_cast<std::size_t>((first_of[r + 1] - first_of[r]) * H));
    b.download(back[r].data(), res.data() + first_of[r] * H, float_bytes(static_cast<std::int64_t>(back[r].size())));
  }
  moe_combine(dispatch, comm_->all_to_all(back), per, out);
}

void Session::moe_combine(const kernels::ExpertDispatch& dispatch, const std::vector<std::vector<float>>& results,
                          std::int64_t per, float* out) {
  // Sum the moe_tp pieces of each row (in piece order) into y [rows, H], in this rank's dispatch order, and add
  // them into out.
  const Model& M = *model_;
  Backend& b = *backend_;
  const std::int64_t H = M.config().hidden, rows = static_cast<std::int64_t>(dispatch.row_token.size());
  if (rows == 0) return;
  const std::size_t moe_tp = static_cast<std::size_t>(M.sharding().moe_tp()), groups = results.size() / moe_tp;
  DeviceArray<float> y(b, rows * H);
  for (std::size_t g = 0; g < groups; ++g) {
    const auto [rb, re] = group_rows(dispatch, per, static_cast<std::int64_t>(g));
    for (std::size_t p = 0; p < moe_tp; ++p) {
      const auto& piece = results[g * moe_tp + p];
      const DeviceArray<float> part(b, piece.data(), static_cast<std::int64_t>(piece.size()));
      b.add(y.data() + rb * H, part.data(), y.data() + rb * H, (re - rb) * H);
    }
  }
  const DeviceArray<std::int64_t> tokens(b, dispatch.row_token.data(), rows);
  DeviceArray<float> scales;
  const bool llama4 = M.params().llama4;
  if (!llama4) scales = DeviceArray<float>(b, dispatch.row_weight.data(), rows);
  b.unpermute_add(y.data(), H, tokens.data(), llama4 ? nullptr : scales.data(), rows, out);
}

}  // namespace moeplan::executor
