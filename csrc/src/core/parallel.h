// A minimal parallel-for for the CPU kernels: splits [0, n) into one chunk per
// thread. Threads are started per call; the kernels' work per call (whole
// images) dwarfs the start-up, and no pool means no global state to clash
// with the host's own threading (torch, OpenMP).
#pragma once

#include <cstdint>
#include <functional>

namespace drdc {
namespace detail {

// fn(begin, end) over chunks of [0, n); runs inline when n < 2·min_chunk or one thread.
void parallel_for(int64_t n, int64_t min_chunk, const std::function<void(int64_t, int64_t)>& fn);

}  // namespace detail
}  // namespace drdc
