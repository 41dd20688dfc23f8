// A downstream project on the installed pq::text: PCRE2 comes with it (find_dependency + pkg-config).
#include <cstdio>

#include <pq/text/regex.hpp>

int main() {
  const pq::text::regex split(pq::text::gpt2_split_pattern);
  const auto pieces = split.split("def f(x):\n    return x  # ok");
  std::printf("pq::text: %zu pre-tokenizer pieces\n", pieces.size());
  return pieces.size() > 5 ? 0 : 1;
}
