// Strict numeric options for the `mom` program. CLI11 alone reads an empty string as 0, clamps an
// integer beyond its type's range and takes "-1" for an unsigned; these validators check the text
// first: the whole of it a number of the option's kind, finite, within [lo, hi].
#pragma once

#include <CLI/CLI.hpp>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <string>
#include <type_traits>

namespace mom::cli {

// A base-10 integer of type T in [lo, hi] (no sign for an unsigned T).
template <typename T> CLI::Validator integer_in(T lo, T hi) {
  static_assert(std::is_integral_v<T>);
  return CLI::Validator(
      [lo, hi](std::string& s) -> std::string {
        T v{};
        const char* end = s.data() + s.size();
        auto [ptr, ec] = std::from_chars(s.data(), end, v);
        if (s.empty() || ptr != end || ec != std::errc() || v < lo || v > hi)
          return "'" + s + "' is not a whole number in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
        return {};
      },
      "INT in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
}

// A finite decimal number in [lo, hi].
inline CLI::Validator number_in(double lo, double hi) {
  auto fmt = [](double x) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", x);
    return std::string(buf);
  };
  return CLI::Validator(
      [lo, hi, fmt](std::string& s) -> std::string {
        char* end = nullptr;
        const double v = s.empty() ? 0.0 : std::strtod(s.c_str(), &end);
        if (s.empty() || end != s.c_str() + s.size() || std::isspace(static_cast<unsigned char>(s[0])))
          return "'" + s + "' is not a number";
        if (!std::isfinite(v) || v < lo || v > hi) return "'" + s + "' is outside [" + fmt(lo) + ", " + fmt(hi) + "]";
        return {};
      },
      "NUMBER in [" + fmt(lo) + ", " + fmt(hi) + "]");
}

// A non-empty string.
inline CLI::Validator non_empty() {
  return CLI::Validator([](std::string& s) -> std::string { return s.empty() ? "must not be empty" : ""; }, "TEXT");
}

}  // namespace mom::cli
