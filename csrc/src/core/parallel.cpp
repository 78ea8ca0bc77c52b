#include "core/parallel.h"

#include <algorithm>
#include <atomic>
#include <exception>
#include <thread>
#include <vector>

#include "drdc/types.h"

namespace drdc {
namespace {
std::atomic<int> g_num_threads{0};  // 0: not set, use hardware_concurrency
}  // namespace

void set_num_threads(int n) { g_num_threads.store(std::max(1, n)); }

int num_threads() noexcept {
  const int n = g_num_threads.load();
  if (n > 0) return n;
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

namespace detail {

void parallel_for(int64_t n, int64_t min_chunk, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  const int64_t by_size = n / std::max<int64_t>(1, min_chunk);
  const int64_t workers = std::min<int64_t>(num_threads(), std::max<int64_t>(1, by_size));
  if (workers <= 1) {
    fn(0, n);
    return;
  }
  const int64_t chunk = (n + workers - 1) / workers;
  std::vector<std::thread> threads;
  std::vector<std::exception_ptr> errors(static_cast<size_t>(workers));
  threads.reserve(static_cast<size_t>(workers - 1));
  auto body = [&](int64_t w) {
    try {
      const int64_t lo = w * chunk, hi = std::min(n, lo + chunk);
      if (lo < hi) fn(lo, hi);
    } catch (...) {
      errors[static_cast<size_t>(w)] = std::current_exception();
    }
  };
  for (int64_t w = 1; w < workers; ++w) threads.emplace_back(body, w);
  body(0);
  for (auto& t : threads) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace detail
}  // namespace drdc
