// The refiner with the analytic runner (ε = true noise of x_t) must recover
// the input exactly, keep the known region equal to the re-noised input at
// every step, keep the condition c = M·x + (1−M)·fill, and produce (almost)
// no heat. Run on the CPU here; test_cuda.cpp repeats it on the GPU.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "core/half.h"
#include "drdc/drdc.h"
#include "test_util.h"

using namespace drdc;

namespace {

struct Problem {
  int B = 2, S = 16, K = 2, t0 = 250, steps = 5;
  std::vector<int> grids{4, 8};
  std::vector<int> pools{1, 2};
  LabelMaps labels;
  std::vector<float> x, fill, start, noise;
  int N() const { return B * static_cast<int>(grids.size()) * K; }
  size_t plane() const { return static_cast<size_t>(N()) * 3 * S * S; }

  Problem() {
    labels = grid_labels(S, grids, K, 11);
    x.resize(static_cast<size_t>(B) * 3 * S * S);
    for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.37f * static_cast<float>(i)) * 0.9f;
    fill.resize(plane());
    start.resize(plane());
    noise.resize(plane() * steps);
    gaussian(Device::kCPU, fill.data(), fill.size(), 5, 0);
    gaussian(Device::kCPU, start.data(), start.size(), 5, 1);
    gaussian(Device::kCPU, noise.data(), noise.size(), 5, 2);
  }
  RefinerConfig config() const {
    RefinerConfig c;
    c.device = Device::kCPU;
    c.batch = B, c.height = c.width = S, c.num_sets = K, c.t0 = t0, c.num_steps = steps;
    c.pool_factors = pools;
    return c;
  }
};

// Wraps the analytic runner and checks, at every call, what the loop handed
// it: channels 0..2 on the known cells = √ᾱ_t·x + √(1−ᾱ_t)·ε' of the step
// before (start noise before the first step), channels 3..5 = the condition.
class CheckingRunner : public Runner {
 public:
  CheckingRunner(const Problem& p, const Schedule& s, DType dtype)
      : p_(p), schedule_(s), inner_(Device::kCPU, dtype, p.x.data(), p.B, static_cast<int>(p.grids.size()) * p.K,
                                    p.S, p.S, s),
        dtype_(dtype), ts_(ddim_timesteps(p.t0, p.steps)) {}
  Device device() const override { return Device::kCPU; }
  DType dtype() const override { return dtype_; }
  void run(const void* input, const float* timesteps, void* output, int n, int h, int w, void* stream) override {
    const int J = static_cast<int>(p_.grids.size()), K = p_.K, S = p_.S;
    const size_t HW = static_cast<size_t>(S) * S;
    const int t = ts_[static_cast<size_t>(call_)];
    for (int i = 0; i < n; ++i) CHECK(timesteps[i] == static_cast<float>(t));
    const float a = static_cast<float>(schedule_.sqrt_alpha_bar(t));
    const float s = static_cast<float>(schedule_.sqrt_one_minus_alpha_bar(t));
    const float* eps_prev = call_ == 0 ? p_.start.data() : p_.noise.data() + (call_ - 1) * p_.plane();
    for (int r = 0; r < n; ++r) {
      const int b = r / (J * K), j = (r / K) % J, k = r % K;
      for (int c = 0; c < 3; ++c)
        for (size_t q = 0; q < HW; ++q) {
          const bool known = p_.labels.data[j * HW + q] != k;
          const size_t xi = (static_cast<size_t>(b) * 3 + c) * HW + q;
          const size_t ri = (static_cast<size_t>(r) * 3 + c) * HW + q;
          const float cond = read(input, (static_cast<size_t>(r) * 6 + 3 + c) * HW + q);
          const float want_c = known ? p_.x[xi] : p_.fill[ri];
          if (cond != round(want_c)) ++bad_condition_;
          if (!known) continue;
          const float xt = read(input, (static_cast<size_t>(r) * 6 + c) * HW + q);
          const float a_x = a * p_.x[xi];
          const float s_e = s * eps_prev[ri];
          if (xt != round(a_x + s_e)) ++bad_known_;
        }
    }
    ++call_;
    inner_.run(input, timesteps, output, n, h, w, stream);
  }
  int calls() const { return call_; }
  int bad_known() const { return bad_known_; }
  int bad_condition() const { return bad_condition_; }

 private:
  float read(const void* p, size_t i) const {
    return dtype_ == DType::kFloat16 ? detail::half_bits_to_float(static_cast<const uint16_t*>(p)[i])
                                     : static_cast<const float*>(p)[i];
  }
  float round(float v) const {
    return dtype_ == DType::kFloat16 ? detail::half_bits_to_float(detail::float_to_half_bits(v)) : v;
  }
  const Problem& p_;
  const Schedule& schedule_;
  AnalyticRunner inner_;
  DType dtype_;
  std::vector<int> ts_;
  int call_ = 0, bad_known_ = 0, bad_condition_ = 0;
};

void recovery(DType dtype, float tol_x, float tol_heat) {
  Problem p;
  const Schedule s = Schedule::linear();
  auto runner = std::make_shared<CheckingRunner>(p, s, dtype);
  Refiner refiner(p.config(), s, p.labels, runner);
  CHECK_EQ(refiner.rows(), p.N());
  CHECK_EQ(refiner.count(), p.steps * 2 * 2);
  std::vector<float> heat(static_cast<size_t>(p.B) * p.S * p.S, -1.f), xt(p.plane());
  const int count = refiner.run(p.x.data(), heat.data(), xt.data(), {p.fill.data(), p.start.data(), p.noise.data()});
  CHECK_EQ(count, refiner.count());
  CHECK_EQ(runner->calls(), p.steps);
  CHECK_EQ(runner->bad_known(), 0);
  CHECK_EQ(runner->bad_condition(), 0);
  // Every row ends at the input image: known cells exactly (ᾱ = 1 at the
  // clean end), unknown cells through x̂0 = x.
  float err = 0.f;
  const size_t img = static_cast<size_t>(3) * p.S * p.S;
  for (int r = 0; r < p.N(); ++r) {
    const int b = r / (2 * p.K);
    for (size_t i = 0; i < img; ++i) err = std::fmax(err, std::fabs(xt[r * img + i] - p.x[b * img + i]));
  }
  std::printf("  %s: max |x_final - x| = %.3g, max heat = %.3g\n", dtype_name(dtype), err,
              *std::max_element(heat.begin(), heat.end()));
  CHECK(err <= tol_x);
  for (float v : heat) CHECK(v >= 0.f && v <= tol_heat);
}

void test_recovery_fp32() { recovery(DType::kFloat32, 2e-6f, 2e-5f * 5 * 2 * 2); }
void test_recovery_fp16() { recovery(DType::kFloat16, 5e-3f, 0.5f); }

// Records whether every pointer the loop hands the runner is 256-byte aligned
// (TensorRT refuses other tensor addresses).
class AlignmentRunner : public Runner {
 public:
  AlignmentRunner(const Problem& p, const Schedule& s)
      : inner_(Device::kCPU, DType::kFloat32, p.x.data(), p.B, static_cast<int>(p.grids.size()) * p.K, p.S, p.S,
               s) {}
  Device device() const override { return Device::kCPU; }
  DType dtype() const override { return DType::kFloat32; }
  void run(const void* input, const float* timesteps, void* output, int n, int h, int w, void* stream) override {
    for (const void* q : {input, static_cast<const void*>(timesteps), static_cast<const void*>(output)})
      if (reinterpret_cast<std::uintptr_t>(q) % 256 != 0) ++misaligned_;
    ++calls_;
    inner_.run(input, timesteps, output, n, h, w, stream);
  }
  int calls() const { return calls_; }
  int misaligned() const { return misaligned_; }

 private:
  AnalyticRunner inner_;
  int calls_ = 0, misaligned_ = 0;
};

void test_runner_pointers_aligned() {
  // N = B·J·K rows is no multiple of 64 here (8 and 12 rows): the timestep
  // rows of later steps must still start on a 256-byte boundary.
  for (int B : {2, 3}) {
    Problem p;
    p.B = B;
    p.x.assign(static_cast<size_t>(B) * 3 * p.S * p.S, 0.25f);
    const Schedule s = Schedule::linear();
    auto runner = std::make_shared<AlignmentRunner>(p, s);
    Refiner refiner(p.config(), s, p.labels, runner);
    std::vector<float> heat(static_cast<size_t>(B) * p.S * p.S), xt(p.plane());
    refiner.run(p.x.data(), heat.data(), xt.data());
    CHECK_EQ(runner->calls(), p.steps);
    CHECK_EQ(runner->misaligned(), 0);
    float err = 0.f;  // the padded timestep rows still carry the right values: exact recovery
    for (float v : xt) err = std::fmax(err, std::fabs(v - 0.25f));
    CHECK(err <= 2e-6f);
  }
}

void test_generated_noise() {
  // Without noise buffers the refiner draws its own; the loop still recovers
  // x, and the same seed gives the same result.
  Problem p;
  const Schedule s = Schedule::linear();
  auto runner = std::make_shared<AnalyticRunner>(Device::kCPU, DType::kFloat32, p.x.data(), p.B, 4, p.S, p.S, s);
  Refiner r1(p.config(), s, p.labels, runner);
  r1.set_noise_seed(99);
  std::vector<float> h1(static_cast<size_t>(p.B) * p.S * p.S), h2(h1.size()), x1(p.plane()), x2(p.plane());
  r1.run(p.x.data(), h1.data(), x1.data());
  Refiner r2(p.config(), s, p.labels, runner);
  r2.set_noise_seed(99);
  r2.run(p.x.data(), h2.data(), x2.data());
  CHECK(x1 == x2);
  CHECK(h1 == h2);
  const size_t img = static_cast<size_t>(3) * p.S * p.S;
  float err = 0.f;
  for (int r = 0; r < p.N(); ++r)
    for (size_t i = 0; i < img; ++i) err = std::fmax(err, std::fabs(x1[r * img + i] - p.x[(r / 4) * img + i]));
  CHECK(err <= 2e-6f);
}

void test_invalid() {
  Problem p;
  const Schedule s = Schedule::linear();
  auto runner = std::make_shared<AnalyticRunner>(Device::kCPU, DType::kFloat32, p.x.data(), p.B, 4, p.S, p.S, s);
  RefinerConfig c = p.config();
  c.device = Device::kCUDA;  // runner is on the CPU
  CHECK_THROWS_STATUS(Refiner(c, s, p.labels, runner), Status::kInvalidArgument);
  c = p.config();
  c.pool_factors = {3};
  CHECK_THROWS_STATUS(Refiner(c, s, p.labels, runner), Status::kInvalidArgument);
  c = p.config();
  c.t0 = 1000;
  CHECK_THROWS_STATUS(Refiner(c, s, p.labels, runner), Status::kInvalidArgument);
  LabelMaps bad = p.labels;
  bad.data[5] = 2;  // K = 2
  CHECK_THROWS_STATUS(Refiner(p.config(), s, bad, runner), Status::kInvalidArgument);
  CHECK_THROWS_STATUS(Refiner(p.config(), s, p.labels, nullptr), Status::kInvalidArgument);
  Refiner r(p.config(), s, p.labels, runner);
  std::vector<float> heat(static_cast<size_t>(p.B) * p.S * p.S);
  CHECK_THROWS_STATUS(r.run(nullptr, heat.data()), Status::kInvalidArgument);
  LoopNoise partial;
  partial.fill = p.fill.data();
  CHECK_THROWS_STATUS(r.run(p.x.data(), heat.data(), nullptr, partial), Status::kInvalidArgument);
}

}  // namespace

int main() {
  drdc_test::run_case("analytic runner: exact recovery, fp32", test_recovery_fp32);
  drdc_test::run_case("analytic runner: exact recovery, fp16 buffers", test_recovery_fp16);
  drdc_test::run_case("generated noise: recovery and determinism", test_generated_noise);
  drdc_test::run_case("runner pointers are 256-byte aligned", test_runner_pointers_aligned);
  drdc_test::run_case("invalid configurations", test_invalid);
  return drdc_test::finish();
}
