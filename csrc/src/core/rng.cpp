// Grid labels (identical to drdc_trt/diffusion/masks.py) and the CPU side of
// the counter-based Gaussian generator.
#include "drdc/rng.h"

#include <cmath>
#include <numeric>
#include <string>
#include <utility>

#include "core/backends.h"
#include "core/device_buffer.h"
#include "core/parallel.h"
#include "core/philox.h"
#include "drdc/buffer.h"
#include "drdc/status.h"

namespace drdc {

uint64_t splitmix64_next(uint64_t& state) noexcept {
  state += 0x9E3779B97F4A7C15ull;
  uint64_t z = state;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

std::vector<int32_t> cell_sets(int num_cells, int num_sets, uint64_t seed) {
  require(num_cells >= 1, "num_cells must be >= 1");
  require(num_sets >= 1, "num_sets must be >= 1");
  std::vector<int32_t> perm(static_cast<size_t>(num_cells));
  std::iota(perm.begin(), perm.end(), 0);
  uint64_t state = seed;
  for (int i = num_cells - 1; i > 0; --i) {
    const uint64_t r = splitmix64_next(state);
    const auto j = static_cast<size_t>(r % static_cast<uint64_t>(i + 1));
    std::swap(perm[static_cast<size_t>(i)], perm[j]);
  }
  std::vector<int32_t> sets(static_cast<size_t>(num_cells));
  for (int pos = 0; pos < num_cells; ++pos) sets[static_cast<size_t>(perm[static_cast<size_t>(pos)])] = pos % num_sets;
  return sets;
}

uint64_t spec_seed(uint64_t seed, int spec_index) noexcept {
  return seed ^ (0x632BE59BD9B4E019ull * static_cast<uint64_t>(spec_index + 1));
}

LabelMaps grid_labels(int size, const std::vector<int>& grid_sizes, int num_sets, uint64_t seed) {
  require(size >= 1, "size must be >= 1");
  require(!grid_sizes.empty(), "grid_sizes must not be empty");
  LabelMaps out;
  out.J = static_cast<int>(grid_sizes.size());
  out.H = out.W = size;
  const size_t plane = static_cast<size_t>(size) * size;
  out.data.resize(plane * grid_sizes.size());
  for (size_t j = 0; j < grid_sizes.size(); ++j) {
    const int g = grid_sizes[j];
    require(g >= 1 && size % g == 0,
            "grid cell size " + std::to_string(g) + " does not divide image size " + std::to_string(size));
    const int cells = size / g;
    const std::vector<int32_t> sets = cell_sets(cells * cells, num_sets, spec_seed(seed, static_cast<int>(j)));
    int32_t* dst = out.data.data() + j * plane;
    for (int y = 0; y < size; ++y)
      for (int x = 0; x < size; ++x)
        dst[static_cast<size_t>(y) * size + x] = sets[static_cast<size_t>((y / g) * cells + x / g)];
  }
  return out;
}

void philox4x32(const uint32_t counter[4], const uint32_t key[2], uint32_t out[4]) noexcept {
  detail::philox4x32_10(counter, key, out);
}

void gaussian(Device device, float* out, std::size_t count, uint64_t seed, uint64_t offset, void* stream) {
  require(out != nullptr || count == 0, "gaussian: out is a null pointer");
  if (count == 0) return;
  if (device == Device::kCPU) return detail::gaussian_cpu(out, count, seed, offset);
  if (device == Device::kCUDA) {
    const ScopedDevice on(detail::gpu_of(out, "out"));
    return detail::gaussian_cuda(out, count, seed, offset, stream);
  }
  throw Error(Status::kInvalidArgument, "device must be cpu or cuda");
}

namespace detail {

void gaussian_cpu(float* out, std::size_t count, uint64_t seed, uint64_t offset) {
  parallel_for(static_cast<int64_t>(count), 1 << 16, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i)
      out[i] = static_cast<float>(gaussian_at(seed, offset, static_cast<uint64_t>(i)));
  });
}

}  // namespace detail
}  // namespace drdc
