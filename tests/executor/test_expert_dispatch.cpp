// Expert-parallel bookkeeping (executor/expert_dispatch.hpp): rows per expert group, regrouping received rows by
// local expert, all-to-all offsets, and a simulated all-to-all over 4 ranks in which every row reaches its expert.
#include <catch2/catch.hpp>

#include <stdexcept>

#include "common/splitmix.hpp"
#include "executor/expert_dispatch.hpp"

using namespace moeplan;

TEST_CASE("Rows and counts of each expert group in a dispatch") {
  // 5 tokens, top-2 over 4 experts
  const std::vector<std::int32_t> ids{0, 3, 1, 0, 3, 2, 3, 1, 0, 2};
  const auto d = kernels::build_expert_dispatch(ids.data(), nullptr, 5, 2, 4);
  REQUIRE(d.expert_offsets == std::vector<std::int64_t>{0, 3, 5, 7, 10});
  CHECK(executor::group_rows(d, 2, 0) == std::pair<std::int64_t, std::int64_t>{0, 5});  // experts 0, 1
  CHECK(executor::group_rows(d, 2, 1) == std::pair<std::int64_t, std::int64_t>{5, 10});  // experts 2, 3
  CHECK(executor::group_expert_counts(d, 2, 0) == std::vector<std::int64_t>{3, 2});
  CHECK(executor::group_expert_counts(d, 2, 1) == std::vector<std::int64_t>{2, 3});
  CHECK(executor::group_expert_counts(d, 1, 3) == std::vector<std::int64_t>{3});
}

TEST_CASE("Received rows regroup expert by expert, sources in order") {
  // source 0 sent 2 rows for expert 0 and 1 for expert 2; source 1 sent 1, 3, 0
  const auto r = executor::group_by_local_expert({{2, 0, 1}, {1, 3, 0}});
  CHECK(r.first_of == std::vector<std::int64_t>{0, 3, 7});
  CHECK(r.row_of == std::vector<std::int64_t>{0, 1, 3, 4, 5, 6, 2});
  CHECK(r.expert_offsets == std::vector<std::int64_t>{0, 3, 6, 7});
  CHECK(r.rows() == 7);
  CHECK(executor::group_by_local_expert({}).rows() == 0);
  CHECK_THROWS_AS(executor::group_by_local_expert({{1, 2}, {1}}), std::invalid_argument);
  CHECK_THROWS_AS(executor::group_by_local_expert({{1, -2}}), std::invalid_argument);
}

TEST_CASE("All-to-all offsets are exclusive prefix sums") {
  CHECK(executor::exclusive_offsets({3, 0, 2}) == std::vector<std::int64_t>{0, 3, 3, 5});
  CHECK(executor::exclusive_offsets({}) == std::vector<std::int64_t>{0});
  CHECK_THROWS_AS(executor::exclusive_offsets({1, -1}), std::invalid_argument);
}

TEST_CASE("A simulated expert-parallel all-to-all brings every routed row to its expert, in source order") {
  const int ranks = 4;
  const std::int64_t E = 8, per = E / ranks, K = 2;
  std::uint64_t seed = 42;
  // Each source rank routes its own tokens; a row is tagged (source, token, slot expert).
  struct Row {
    int source;
    std::int64_t token;
    std::int32_t expert;
  };
  std::vector<std::vector<std::vector<Row>>> sent(ranks, std::vector<std::vector<Row>>(ranks));  // [source][dest]
  std::vector<std::vector<std::vector<std::int64_t>>> counts(ranks, std::vector<std::vector<std::int64_t>>(ranks));  // [dest][source]
  for (int src = 0; src < ranks; ++src) {
    const std::int64_t T = 3 + src * 2;
    std::vector<std::int32_t> ids;
    for (std::int64_t t = 0; t < T; ++t) {
      const auto a = static_cast<std::int32_t>(splitmix64(seed) % E);
      auto b = static_cast<std::int32_t>(splitmix64(seed) % (E - 1));
      if (b >= a) ++b;  // top-k picks distinct experts
      ids.push_back(a);
      ids.push_back(b);
    }
    const auto d = kernels::build_expert_dispatch(ids.data(), nullptr, T, K, E);
    for (int g = 0; g < ranks; ++g) {
      const auto [rb, re] = executor::group_rows(d, per, g);
      for (std::int64_t r = rb; r < re; ++r) {
        std::int32_t expert = 0;
        while (d.expert_offsets[static_cast<std::size_t>(expert + 1)] <= r) ++expert;
        sent[src][g].push_back({src, d.row_token[static_cast<std::size_t>(r)], expert});
      }
      counts[g][src] = executor::group_expert_counts(d, per, g);
    }
  }
  for (int dest = 0; dest < ranks; ++dest) {
    std::vector<Row> received;  // in arrival order: source 0's rows first
    for (int src = 0; src < ranks; ++src) received.insert(received.end(), sent[src][dest].begin(), sent[src][dest].end());
    const auto grouped = executor::group_by_local_expert(counts[dest]);
    REQUIRE(grouped.rows() == static_cast<std::int64_t>(received.size()));
    for (std::int64_t e = 0; e < per; ++e) {
      int last_source = -1;
      for (std::int64_t i = grouped.expert_offsets[static_cast<std::size_t>(e)]; i < grouped.expert_offsets[static_cast<std::size_t>(e + 1)]; ++i) {
        const Row& row = received[static_cast<std::size_t>(grouped.row_of[static_cast<std::size_t>(i)])];
        CHECK(row.expert == dest * per + e);
        CHECK(row.source >= last_source);
        last_source = row.source;
      }
    }
  }
}
