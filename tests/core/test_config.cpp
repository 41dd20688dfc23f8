#include <doctest/doctest.h>
#include <pq/config.hpp>
TEST_CASE("version") { CHECK(PQ_VERSION_MAJOR == 0); }
