// Catch2 2.13 main for every CPU test binary.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
