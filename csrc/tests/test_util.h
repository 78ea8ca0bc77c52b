// A few assertion helpers for the ctest executables (no test framework dependency).
#pragma once

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "drdc/status.h"

namespace drdc_test {

inline int& failures() {
  static int n = 0;
  return n;
}

inline void fail(const char* file, int line, const std::string& what) {
  std::fprintf(stderr, "%s:%d: FAILED: %s\n", file, line, what.c_str());
  ++failures();
}

// Runs one named case; an escaping exception counts as a failure.
inline void run_case(const char* name, const std::function<void()>& fn) {
  const int before = failures();
  try {
    fn();
  } catch (const std::exception& e) {
    fail(name, 0, std::string("unexpected exception: ") + e.what());
  }
  std::printf("%s %s\n", failures() == before ? "[ ok ]" : "[FAIL]", name);
}

inline int finish() {
  if (failures()) std::printf("%d check(s) failed\n", failures());
  return failures() ? 1 : 0;
}

inline float max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return INFINITY;
  float m = 0.f;
  for (size_t i = 0; i < a.size(); ++i) {
    const float d = std::fabs(a[i] - b[i]);
    if (d != d) return d;  // a NaN anywhere fails every tolerance (a later finite d must not hide it)
    if (d > m) m = d;
  }
  return m;
}

}  // namespace drdc_test

#define CHECK(cond)                                                         \
  do {                                                                      \
    if (!(cond)) ::drdc_test::fail(__FILE__, __LINE__, #cond);              \
  } while (0)

#define CHECK_EQ(a, b)                                                                      \
  do {                                                                                      \
    const auto va_ = (a);                                                                   \
    const auto vb_ = (b);                                                                   \
    if (!(va_ == vb_))                                                                      \
      ::drdc_test::fail(__FILE__, __LINE__, std::string(#a " == " #b ": ") +                \
                                                std::to_string(va_) + " vs " + std::to_string(vb_)); \
  } while (0)

#define CHECK_NEAR(a, b, tol)                                                                       \
  do {                                                                                              \
    const double va_ = (a), vb_ = (b);                                                              \
    if (!(std::fabs(va_ - vb_) <= (tol)))                                                           \
      ::drdc_test::fail(__FILE__, __LINE__, std::string(#a " ~ " #b ": ") + std::to_string(va_) +  \
                                                " vs " + std::to_string(vb_));                      \
  } while (0)

// The statement must throw drdc::Error with the given status.
#define CHECK_THROWS_STATUS(stmt, want_status)                                                  \
  do {                                                                                     \
    bool thrown_ = false;                                                                  \
    try {                                                                                  \
      stmt;                                                                                \
    } catch (const ::drdc::Error& e_) {                                                    \
      thrown_ = e_.status() == (want_status);                                                   \
      if (!thrown_) ::drdc_test::fail(__FILE__, __LINE__, std::string("wrong status: ") + e_.what()); \
    }                                                                                      \
    if (!thrown_) ::drdc_test::fail(__FILE__, __LINE__, "expected drdc::Error from " #stmt); \
  } while (0)
