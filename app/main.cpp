// The moeplan executable: hands argv to app::run and returns its exit code.
#include <iostream>
#include <string>
#include <vector>

#include "app/cli.hpp"

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  return moeplan::app::run(args, std::cout, std::cerr);
}
