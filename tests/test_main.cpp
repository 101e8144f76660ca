// Catch2 2.13 main for every CPU test binary. It refuses to run when a test case's name holds ';': CTest's
// catch_discover_tests splits names there (a CMake list separator), so such a test would be registered under a
// truncated name that matches nothing, and Catch reports success without running it.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <iostream>
#include <string>

int main(int argc, char* argv[]) {
  int bad = 0;
  for (const Catch::TestCase& test : Catch::getRegistryHub().getTestCaseRegistry().getAllTests())
    if (test.getTestCaseInfo().name.find(';') != std::string::npos) {
      std::cerr << "test case name with ';' (CTest cannot run it): " << test.getTestCaseInfo().name << "\n";
      ++bad;
    }
  if (bad > 0) return 1;
  return Catch::Session().run(argc, argv);
}
