// Which $/GPU-hour a plan uses: --gpu-price overrides per GPU, provider filters, the default choice that skips flagged
// rows, and the marks a plan row and the API comparison carry (docs/planner.md "Cost").
#include <catch2/catch.hpp>

#include "common/error.hpp"
#include "gpu_db/gpu_db.hpp"
#include "planner/plan.hpp"
#include "planner/prices.hpp"
#include "planner/serving_compare.hpp"
#include "tests/test_util.hpp"

using namespace moeplan;
using namespace moeplan::planner;

namespace {
struct Fixture {
  gpu_db::Database db = gpu_db::Database::load(test::data());
  PriceChoice parse(const std::vector<std::string>& entries) {
    PriceChoice c;
    parse_gpu_prices(entries, db, c);
    return c;
  }
};
}  // namespace

TEST_CASE_METHOD(Fixture, "the --gpu-price option takes GPU=USD entries by any name or alias, or one USD for every GPU") {
  const auto c = parse({"h100=2.49", "B200=5.50"});
  REQUIRE(c.usd_per_gpu_hour.size() == 2);
  CHECK(c.usd_per_gpu_hour.at("h100-sxm") == 2.49);
  CHECK(c.usd_per_gpu_hour.at("b200") == 5.50);
  CHECK(c.usd_per_gpu_hour_all == 0);
  CHECK(parse({"1.25"}).usd_per_gpu_hour_all == 1.25);
  CHECK(parse({"h100-sxm=100"}).usd_per_gpu_hour.at("h100-sxm") == kMaxUsdPerGpuHour);  // the bound itself is accepted
  // The override wins over the data; a GPU without one keeps the data's default.
  const auto h100 = gpu_price(c, db, "h100-sxm");
  CHECK(h100.usd_per_gpu_hour == 2.49);
  CHECK(h100.overridden);
  CHECK(h100.source == "--gpu-price");
  const auto h200 = gpu_price(c, db, "h200-sxm");
  CHECK_FALSE(h200.overridden);
  CHECK(h200.usd_per_gpu_hour > 0);
}

TEST_CASE_METHOD(Fixture, "bad --gpu-price entries are refused naming the entry") {
  CHECK_THROWS_WITH(parse({"h100-sx=2"}), Catch::Contains("unknown GPU 'h100-sx'"));
  for (const char* bad : {"h100-sxm=0", "h100-sxm=-1", "h100-sxm=nan", "h100-sxm=inf", "h100-sxm=100.5", "h100-sxm=2x",
                          "h100-sxm="})
    CHECK_THROWS_WITH(parse({bad}), Catch::Contains(bad) && Catch::Contains("at most 100"));
  CHECK_THROWS_WITH(parse({"0"}), Catch::Contains("above 0"));
  CHECK_THROWS_WITH(parse({"1e9"}), Catch::Contains("at most 100"));
  // Two names of one GPU.
  CHECK_THROWS_WITH(parse({"h100-sxm=2", "h100=3"}), Catch::Contains("h100-sxm is given twice") && Catch::Contains("h100=3"));
  CHECK_THROWS_WITH(parse({"h100-sxm=2", "1.5"}), Catch::Contains("GPU=USD"));
  CHECK_THROWS_AS(parse({}), InputError);
}

TEST_CASE_METHOD(Fixture, "the default price skips flagged rows, a provider picked by name is used as it is") {
  // RTX PRO 6000 Workstation Edition: packet.ai's $0.66 is dated before the card was announced; the default is
  // RunPod's row (confidence low: a deploybase.ai page).
  const PriceChoice none;
  const auto pro = gpu_price(none, db, "rtx-pro-6000");
  CHECK(pro.source.rfind("RunPod", 0) == 0);
  CHECK(pro.usd_per_gpu_hour == 1.57);
  CHECK(pro.confidence == gpu_db::Confidence::low);
  CHECK(pro.flags.empty());
  PriceChoice packet;
  packet.provider = parse_providers({"PACKET.AI"}, db, "--price-source").front();
  CHECK(packet.provider == "packet.ai");
  const auto flagged = gpu_price(packet, db, "rtx-pro-6000");
  CHECK(flagged.usd_per_gpu_hour == 0.66);
  REQUIRE(flagged.flags.size() == 1);
  CHECK(flagged.flags[0] == "dated before launch (2025-03-18)");  // the launch day is verified (gpus.yaml)
  // The Server Edition's one row, AWS's g7e, is its default.
  const auto server = gpu_price(none, db, "rtx-pro-6000-server");
  CHECK(server.source.rfind("AWS", 0) == 0);
  CHECK(server.usd_per_gpu_hour == 4.143);
  // H100 SXM: unflagged rows of confidence medium exist, so a low-confidence row never wins on price alone.
  const auto h100 = gpu_price(none, db, "h100-sxm");
  CHECK(h100.confidence == gpu_db::Confidence::medium);
  for (const auto& p : db.gpu_prices())
    if (p.gpu == "h100-sxm" && p.tier == "on-demand" && p.flags.empty() && p.confidence != gpu_db::Confidence::low)
      CHECK(h100.usd_per_gpu_hour <= p.usd_per_gpu_hour);
  // Excluding a provider moves the default to the next row.
  PriceChoice no_runpod;
  no_runpod.exclude_providers = parse_providers({"runpod"}, db, "--exclude-provider");
  CHECK(gpu_price(no_runpod, db, "rtx-pro-6000").usd_per_gpu_hour == 0);  // packet.ai's row is flagged: no default left
}

TEST_CASE_METHOD(Fixture, "provider filters that leave no price, and unknown providers, are refused") {
  CHECK_THROWS_WITH(parse_providers({"no-such-cloud"}, db, "--exclude-provider"),
                    Catch::Contains("--exclude-provider") && Catch::Contains("unknown provider 'no-such-cloud'"));
  CHECK_THROWS_AS(parse_providers({}, db, "--price-source"), InputError);
  PriceChoice c;
  c.exclude_providers = parse_providers({"RunPod", "packet.ai", "AWS"}, db, "--exclude-provider");
  const std::vector<const gpu_db::GpuSpec*> pro = {&db.gpu("rtx-pro-6000")};
  CHECK_THROWS_WITH(check_price_choice(c, db, pro), Catch::Contains("--exclude-provider RunPod,packet.ai,AWS") &&
                                                        Catch::Contains("no on-demand price"));
  c.usd_per_gpu_hour["rtx-pro-6000"] = 1.2;  // an override keeps the GPU priced
  CHECK_NOTHROW(check_price_choice(c, db, pro));
  PriceChoice picked;
  picked.provider = "packet.ai";
  picked.exclude_providers = {"packet.ai"};
  CHECK_THROWS_WITH(check_price_choice(picked, db, pro), Catch::Contains("--price-source packet.ai"));
  picked.exclude_providers.clear();
  CHECK_NOTHROW(check_price_choice(picked, db, pro));
  CHECK_THROWS_AS(check_price_choice(picked, db, {&db.gpu("mi300x")}), InputError);  // packet.ai lists no MI300X
}

TEST_CASE_METHOD(Fixture, "plan rows carry the price they use, its confidence and the override") {
  const auto model = test::load("llama3.1-8b");
  PlanRequest r;
  r.model = &model;
  r.precisions = &test::precisions();
  r.precision_specs = {"bf16"};
  r.gpus = {&db.gpu("h100-sxm"), &db.gpu("rtx-pro-6000")};
  r.counts = {1};
  r.serving_rows = 0;
  r.prices.usd_per_gpu_hour["h100-sxm"] = 1.0;
  const auto res = plan(r, db);
  bool h100 = false, pro = false;
  for (const auto& row : res.rows) {
    if (row.gpu->name == "h100-sxm") {
      h100 = true;
      CHECK(row.usd_per_gpu_hour == 1.0);
      CHECK(row.price_confidence == "given");
      CHECK(row.price_source == "--gpu-price");
    } else {
      pro = true;
      CHECK(row.usd_per_gpu_hour == 1.57);
      CHECK(row.price_confidence == "low");
      CHECK(row.price_flags.empty());
    }
  }
  CHECK(h100);
  CHECK(pro);
  CHECK(price_rule_text(r.prices).find("h100-sxm $1.00") != std::string::npos);
}

TEST_CASE_METHOD(Fixture, "the API break-even uses the cheapest offer of confidence medium or high") {
  // Llama 4 Maverick: Lambda's $0.05 / $0.10 is the cheapest but seen only in LiteLLM's map (confidence low).
  PlanRow self;
  self.usd_per_m_blended_tokens = 0.05;
  self.usd_per_month = 20000;
  self.output_tokens_per_s = 10000;
  const auto c = compare_api(db, "llama4-maverick", self, 1000, 1000);
  CHECK(c.offers.front().price.provider == "Lambda");
  CHECK(c.offers.front().price.confidence == gpu_db::Confidence::low);
  REQUIRE(c.reference > 0);
  const auto& ref = c.reference_offer();
  CHECK(ref.price.confidence != gpu_db::Confidence::low);
  CHECK(ref.price.flags.empty());
  for (std::size_t i = 0; i < c.reference; ++i)
    CHECK((c.offers[i].price.confidence == gpu_db::Confidence::low || !c.offers[i].price.flags.empty()));
  CHECK(c.breakeven_tokens_per_month == Approx(20000 / ref.usd_per_m_blended * 1e6));
}
