// The progress bar: its text for given counts, thread-safe counting, and silence when the stream is not a terminal.
#include <catch2/catch.hpp>

#include <sstream>
#include <thread>
#include <vector>

#include "common/progress.hpp"

using namespace moeplan;

TEST_CASE("Progress::line renders the bar, the count, the share and the ETA") {
  CHECK(Progress::line("plan", 0, 40, 0.0, 10) == "plan [----------] 0/40  0 %  ETA --:--");
  // 10 of 40 in 3 s: 30 more units at 0.3 s each = 9 s.
  CHECK(Progress::line("plan", 10, 40, 3.0, 10) == "plan [##--------] 10/40  25 %  ETA 0:09");
  CHECK(Progress::line("run", 40, 40, 12.0, 10) == "run [##########] 40/40  100 %  ETA 0:00");
  // 1 of 100 after 75 s: 99 x 75 s = 2:03:45.
  CHECK(Progress::line("calibrate", 1, 100, 75.0, 4) == "calibrate [----] 1/100  1 %  ETA 2:03:45");
  // Counts beyond the total are shown as the total; an empty job is complete.
  CHECK(Progress::line("x", 7, 5, 1.0, 5) == "x [#####] 5/5  100 %  ETA 0:00");
  CHECK(Progress::line("x", 0, 0, 0.0, 2) == "x [##] 0/0  100 %  ETA --:--");
}

TEST_CASE("Progress draws on a terminal and erases its line when finished") {
  std::ostringstream out;
  {
    Progress p("validate", 3, out, true);
    p.advance();  // the first unit always draws
    p.advance(2);  // the last unit always draws
  }
  const std::string s = out.str();
  CHECK(s.find("\rvalidate [##########--------------------] 1/3  33 %  ETA ") != std::string::npos);
  CHECK(s.find("3/3  100 %  ETA 0:00") != std::string::npos);
  CHECK(s.size() >= 4);
  CHECK(s.substr(s.size() - 4) == "\r\x1b[K");  // erased at the end
}

TEST_CASE("Progress writes nothing when the stream is not a terminal, and counts from many threads") {
  std::ostringstream out;
  Progress p("plan", 4000, out, false);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&p] {
      for (int i = 0; i < 1000; ++i) p.advance();
    });
  for (auto& t : threads) t.join();
  CHECK(p.done() == 4000);
  p.finish();
  CHECK(out.str().empty());
}
