// pq/pq.hpp: umbrella header of the standard-library-only core.
#pragma once
#include <pq/config.hpp>
#include <pq/error.hpp>
