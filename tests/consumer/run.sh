#!/usr/bin/env bash
# Builds the two consumer projects the way users consume pq: find_package(pq CONFIG) against an
# installed copy, and add_subdirectory of the source tree. Args: SOURCE_DIR BUILD_DIR
set -euo pipefail
src=$1 build=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" > /dev/null
cmake -S "$src/tests/consumer/find_package" -B "$work/fp" -DCMAKE_PREFIX_PATH="$work/prefix" > /dev/null
cmake --build "$work/fp" > /dev/null
"$work/fp/consumer"
"$work/fp/consumer_text"
cmake -S "$src/tests/consumer/add_subdirectory" -B "$work/as" -DPQ_SOURCE="$src" > /dev/null
cmake --build "$work/as" > /dev/null
"$work/as/consumer"
