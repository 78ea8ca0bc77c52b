// Known answers of the building blocks: labels and schedule (values produced
// by drdc_trt/diffusion/masks.py and schedule.py), Philox (Random123 test
// vectors), half conversion (IEEE rounding), the fuse kernel on maps
// whose result is known in closed form and GLAD's per-row step on a hand case.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "core/backends.h"
#include "core/half.h"
#include "drdc/drdc.h"
#include "drdc/drdc_math.h"
#include "test_util.h"

using namespace drdc;

static void test_labels() {
  // grid_labels(16, [4, 8], 2, seed=0), one value per cell.
  const LabelMaps l = grid_labels(16, {4, 8}, 2, 0);
  CHECK_EQ(l.J, 2);
  const int want0[16] = {1, 1, 0, 0, 0, 1, 0, 0, 1, 1, 1, 1, 0, 1, 0, 0};
  const int want1[4] = {1, 1, 0, 0};
  for (int cy = 0; cy < 4; ++cy)
    for (int cx = 0; cx < 4; ++cx)
      for (int dy = 0; dy < 4; ++dy)
        for (int dx = 0; dx < 4; ++dx)
          CHECK_EQ(l.data[static_cast<size_t>((cy * 4 + dy) * 16 + cx * 4 + dx)], want0[cy * 4 + cx]);
  for (int y = 0; y < 16; ++y)
    for (int x = 0; x < 16; ++x) CHECK_EQ(l.data[static_cast<size_t>(256 + y * 16 + x)], want1[(y / 8) * 2 + x / 8]);
  // grid_labels(12, [2], 3, seed=12345)
  const int want2[36] = {1, 2, 2, 2, 1, 2, 1, 2, 0, 0, 0, 0, 2, 2, 2, 1, 1, 1,
                         0, 0, 2, 2, 1, 1, 2, 0, 1, 0, 0, 2, 1, 1, 0, 0, 1, 0};
  const LabelMaps l2 = grid_labels(12, {2}, 3, 12345);
  for (int c = 0; c < 36; ++c) CHECK_EQ(l2.data[static_cast<size_t>((c / 6) * 2 * 12 + (c % 6) * 2)], want2[c]);
  // cell_sets(10, 3, 2**64 - 1)
  const std::vector<int32_t> want3{2, 1, 2, 0, 1, 1, 0, 0, 0, 2};
  CHECK(cell_sets(10, 3, ~0ull) == want3);
  CHECK_THROWS_STATUS(grid_labels(16, {5}, 2, 0), Status::kInvalidArgument);
}

static void test_schedule() {
  const Schedule s = Schedule::linear();
  CHECK_EQ(s.num_train_timesteps(), 1000);
  CHECK(s.alpha_bar(0) == 0x1.fff2e48e8a71ep-1);
  CHECK(s.alpha_bar(1) == 0x1.ffe32d1d48680p-1);
  CHECK(s.alpha_bar(249) == 0x1.0c54eb09c8a1ap-1);
  CHECK(s.alpha_bar(500) == 0x1.3ea7b576a75f6p-4);
  CHECK(s.alpha_bar(999) == 0x1.528cc8c61621dp-15);
  CHECK(s.alpha_bar(-1) == 1.0);
  const Schedule s2 = Schedule::linear(7, 0.001, 0.3);
  const double want[7] = {0x1.ff7ced916872bp-1, 0x1.e57cc39ffd60fp-1, 0x1.b49d6e65635c2p-1, 0x1.72e787a32f6a1p-1,
                          0x1.289992c78747fp-1, 0x1.bccd0cd873ec0p-2, 0x1.375c55cab78b9p-2};
  for (int t = 0; t < 7; ++t) CHECK(s2.alpha_bar(t) == want[t]);
  CHECK((ddim_timesteps(250, 10) == std::vector<int>{250, 225, 200, 175, 150, 125, 100, 75, 50, 25}));
  CHECK((ddim_timesteps(7, 3) == std::vector<int>{7, 4, 2}));
  CHECK((ddim_timesteps(1000, 7) == std::vector<int>{1000, 857, 714, 571, 428, 285, 142}));
  CHECK_THROWS_STATUS(ddim_timesteps(5, 6), Status::kInvalidArgument);
  CHECK_THROWS_STATUS(s.alpha_bar(1000), Status::kInvalidArgument);
}

static void test_philox() {
  // Random123 known-answer vectors for philox4x32-10.
  uint32_t out[4];
  const uint32_t c0[4] = {0, 0, 0, 0}, k0[2] = {0, 0};
  philox4x32(c0, k0, out);
  CHECK_EQ(out[0], 0x6627e8d5u);
  CHECK_EQ(out[1], 0xe169c58du);
  CHECK_EQ(out[2], 0xbc57ac4cu);
  CHECK_EQ(out[3], 0x9b00dbd8u);
  const uint32_t c1[4] = {~0u, ~0u, ~0u, ~0u}, k1[2] = {~0u, ~0u};
  philox4x32(c1, k1, out);
  CHECK_EQ(out[0], 0x408f276du);
  CHECK_EQ(out[1], 0x41c83b0eu);
  CHECK_EQ(out[2], 0xa20bc7c6u);
  CHECK_EQ(out[3], 0x6d5451fdu);
  const uint32_t c2[4] = {0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}, k2[2] = {0xa4093822u, 0x299f31d0u};
  philox4x32(c2, k2, out);
  CHECK_EQ(out[0], 0xd16cfe09u);
  CHECK_EQ(out[1], 0x94fdccebu);
  CHECK_EQ(out[2], 0x5001e420u);
  CHECK_EQ(out[3], 0x24126ea1u);
  // Moments of 2^20 draws, and slices are independent of where they start.
  std::vector<float> g(1 << 20);
  gaussian(Device::kCPU, g.data(), g.size(), 7, 3);
  double m = 0, v = 0;
  for (float x : g) m += x;
  m /= g.size();
  for (float x : g) v += (x - m) * (x - m);
  v /= g.size();
  CHECK_NEAR(m, 0.0, 5e-3);
  CHECK_NEAR(v, 1.0, 5e-3);
  std::vector<float> g2(g.size());
  gaussian(Device::kCPU, g2.data(), g2.size(), 7, 4);
  CHECK(std::memcmp(g.data(), g2.data(), 64) != 0);
}

static void test_half() {
  using detail::float_to_half_bits;
  using detail::half_bits_to_float;
  for (uint32_t h = 0; h < 0x10000u; ++h) {
    const bool nan = (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu);
    if (nan) continue;
    if (float_to_half_bits(half_bits_to_float(static_cast<uint16_t>(h))) != h) {
      CHECK(false && "half round trip");
      break;
    }
  }
  CHECK_EQ(float_to_half_bits(65504.f), 0x7bffu);
  CHECK_EQ(float_to_half_bits(65520.f), 0x7c00u);            // tie between max and inf: to even = inf
  CHECK_EQ(float_to_half_bits(1.f + 0x1p-11f), 0x3c00u);     // tie: to even (down)
  CHECK_EQ(float_to_half_bits(1.f + 3 * 0x1p-11f), 0x3c02u); // tie: to even (up)
  CHECK_EQ(float_to_half_bits(0x1p-24f), 0x0001u);           // smallest sub-normal
  CHECK_EQ(float_to_half_bits(0x1p-25f), 0x0000u);           // tie with 0: to even
  CHECK_EQ(float_to_half_bits(0x1.8p-25f), 0x0001u);
  CHECK_EQ(float_to_half_bits(-2.f), 0xc000u);
  CHECK(half_bits_to_float(0x3555u) == 0x1.554p-2f);
}

static void test_fuse_known() {
  // A single hot pixel in the heat: the 3×3 mean filter spreads v/9 inside,
  // v/6 along an edge, v/4 in a corner (padding excluded from the divisor).
  const int B = 1, H = 6, W = 6, h = 2, w = 2;
  std::vector<float> heat(B * H * W, 0.f), base{1.f, 1.f, 1.f, 1.f};
  heat[0] = 36.f;       // corner (0, 0)
  heat[3 * W + 3] = 18.f;  // interior (3, 3)
  std::vector<float> fin(B * H * W), hd(B * H * W), hb(B * H * W), score(B);
  FuseArgs a;
  a.heat = heat.data(), a.base = base.data(), a.final_map = fin.data(), a.diff_map = hd.data();
  a.base_up = hb.data(), a.score = score.data();
  a.B = B, a.H = H, a.W = W, a.h = h, a.w = w;
  a.inv_count = 0.5f, a.mean_filter = 3, a.mu_d = 0.f, a.sd_d = 1.f, a.mu_b = 1.f, a.sd_b = 2.f, a.lam = 1.0;
  a.score_window = 2;
  fuse(Device::kCPU, a);
  CHECK_NEAR(hd[0], 18.f / 4, 1e-6);
  CHECK_NEAR(hd[1], 18.f / 6, 1e-6);
  CHECK_NEAR(hd[2 * W + 2], 9.f / 9, 1e-6);
  CHECK_NEAR(hd[4 * W + 4], 9.f / 9, 1e-6);
  CHECK_NEAR(hd[5 * W + 5], 0.f, 0);
  for (float v : hb) CHECK_NEAR(v, 1.f, 0);  // a constant map up-samples to itself
  // λ = 1: final = hd; best 2×2 window: the top-left corner block.
  CHECK_NEAR(score[0], (18.f / 4 + 2 * 18.f / 6 + 18.f / 9) / 4, 1e-6);

  // Bilinear 2→4 of [[0, 1], [2, 3]] (align_corners=False): taps at
  // src = max(0, (dst + ½)/2 − ½) = 0, .25, .75, 1 (clamped at the end).
  std::vector<float> base2{0.f, 1.f, 2.f, 3.f}, heat2(16, 0.f), f2(16), d2(16), u2(16), s2(1);
  FuseArgs b = a;
  b.heat = heat2.data(), b.base = base2.data(), b.final_map = f2.data(), b.diff_map = d2.data();
  b.base_up = u2.data(), b.score = s2.data();
  b.H = b.W = 4, b.mu_b = 0.f, b.sd_b = 1.f, b.lam = 0.0, b.mean_filter = 1, b.score_window = 4;
  fuse(Device::kCPU, b);
  const float sx[4] = {0.f, 0.25f, 0.75f, 1.f};
  for (int y = 0; y < 4; ++y)
    for (int x = 0; x < 4; ++x) CHECK_NEAR(u2[y * 4 + x], 2 * sx[y] + sx[x], 1e-6);
  CHECK_NEAR(s2[0], 1.5f, 1e-6);  // mean of the whole map

  FuseArgs bad = a;
  bad.mean_filter = 4;
  CHECK_THROWS_STATUS(fuse(Device::kCPU, bad), Status::kInvalidArgument);
  bad = a;
  bad.score_window = 7;
  CHECK_THROWS_STATUS(fuse(Device::kCPU, bad), Status::kInvalidArgument);
  bad = a;
  bad.heat = nullptr;
  CHECK_THROWS_STATUS(fuse(Device::kCPU, bad), Status::kInvalidArgument);
}

// The integer-atomic float max of the CUDA score kernel (drdc/drdc_math.h's
// float_max_op), emulated with the same int / unsigned orders on the host.
static float emulated_max(float init, const std::vector<float>& values) {
  uint32_t cur;
  std::memcpy(&cur, &init, sizeof(cur));
  for (float v : values) {
    const detail::FloatMaxOp op = detail::float_max_op(v);
    if (op.min_unsigned)
      cur = std::min(cur, op.bits);
    else
      cur = static_cast<uint32_t>(std::max(static_cast<int32_t>(cur), static_cast<int32_t>(op.bits)));
  }
  float out;
  std::memcpy(&out, &cur, sizeof(out));
  return out;
}

static void test_float_max_op() {
  const float inf = INFINITY;
  CHECK(emulated_max(-inf, {-0.0f}) == 0.f);  // −0.0 must beat −inf
  CHECK(!std::signbit(emulated_max(-inf, {-0.0f})));
  CHECK(emulated_max(-inf, {-3.f, -0.0f, -1.f}) == 0.f);
  CHECK(emulated_max(-inf, {-3.f, -1.f, -2.f}) == -1.f);
  CHECK(emulated_max(-inf, {-3.f, 2.f, 0.5f}) == 2.f);
  CHECK(emulated_max(-inf, {0.0f, -0.0f, -5.f}) == 0.f);
  CHECK(std::isnan(emulated_max(-inf, {1.f, NAN, 3.f})));
  CHECK(std::isnan(emulated_max(-inf, {NAN, -1.f})));
}

static void test_fuse_cuda_width_limit() {
  // The limit counts the score kernel's static per-warp slots beside the W
  // column sums; the check comes before any CUDA call, so it holds anywhere.
  CHECK_EQ(detail::kFuseMaxWidthCuda, (48 * 1024 - 32 * 4) / 4);
  float dummy[1];
  FuseArgs a;
  a.heat = a.base = dummy, a.final_map = a.diff_map = a.base_up = a.score = dummy;
  a.B = 1, a.H = 1, a.h = a.w = 1, a.inv_count = 1.f, a.mean_filter = 1, a.score_window = 1;
  for (int W : {detail::kFuseMaxWidthCuda + 1, 48 * 1024 / 4}) {
    a.W = W;
    std::string message;
    const Status s = call([&] { fuse(Device::kCUDA, a); }, &message);
    CHECK(s == Status::kInvalidArgument);
    CHECK(message.find("width W=" + std::to_string(W)) != std::string::npos);
  }
}

// GLAD's per-row step on two rows of 1×1×2 pixels (the hand case of
// tests/unit/test_glad_kernels.py): row 0 triggers at k = 2, row 1 falls back at k = 3
// on a NaN score and stops there (fallback_stops), the last step finishes row 0 with its x0.
static void test_glad_known() {
  // predict: √ᾱ = 0.8, √(1−ᾱ) = 0.6: x0_gen = (x_t − 0.6ε)/0.8, x0_in = x + 0.75(noise − ε), clamped
  float xt[4] = {0.5f, 0.5f, 2.f, -1.f}, x[4] = {0.2f, -0.4f, 0.9f, 0.f};
  float noise[4] = {0.5f, 0.5f, 1.f, -1.f}, eps4[4] = {0.5f, -0.5f, 0.f, 1.f}, gen4[4], in4[4];
  GladPredictArgs p;
  p.x_t = xt, p.x = x, p.noise = noise, p.eps = eps4, p.x0_gen = gen4, p.x0_in = in4;
  p.count = 4, p.sqrt_ab = 0.8f, p.sqrt_1mab = 0.6f;
  glad_predict(Device::kCPU, p);
  const float want_gen[4] = {0.25f, 1.f, 1.f, -1.f}, want_in[4] = {0.2f, 0.35f, 1.f, -1.f};
  for (int i = 0; i < 4; ++i) {
    CHECK_NEAR(gen4[i], want_gen[i], 1e-6);
    CHECK_NEAR(in4[i], want_in[i], 1e-6);
  }

  float gen[4] = {0.5f, -0.5f, 0.2f, 0.4f}, in[4] = {0.1f, 0.3f, -0.2f, 0.6f};
  float eps[4] = {1.f, -1.f, 0.5f, 0.5f}, w[4] = {0.25f, 0.75f, 0.5f, 0.5f};
  float x_t[4] = {9.f, 9.f, 9.f, 9.f}, recon[4] = {0.f, 0.f, 0.f, 0.f};
  uint8_t done[2] = {0, 0}, triggered[2] = {0, 0};
  int64_t steps[2] = {0, 0}, trigger_step[2] = {-1, -1}, trigger_kind[2] = {0, 0};
  float max_score[2] = {-INFINITY, -INFINITY};
  float score[2] = {0.9f, 0.4f};
  GladUpdateArgs a;
  a.x0_gen = gen, a.x0_in = in, a.eps = eps, a.w = w, a.score = score, a.x_t = x_t, a.recon = recon;
  a.done = done, a.triggered = triggered, a.steps = steps, a.trigger_step = trigger_step;
  a.trigger_kind = trigger_kind, a.max_score = max_score;
  a.B = 2, a.C = 1, a.H = 1, a.W = 2, a.k = 2, a.t = 400, a.min_step = 350, a.ab_next = 0.64, a.tau = 0.5f;
  a.fallback_stops = true;
  glad_update(Device::kCPU, a);
  // row 0: x0 = w·gen + (1−w)·in = (0.2, −0.3), x_t' = 0.8·x0 + 0.6·ε; row 1: x0 = gen
  const float want1[4] = {0.76f, -0.84f, 0.46f, 0.62f};
  for (int i = 0; i < 4; ++i) CHECK_NEAR(x_t[i], want1[i], 1e-6);
  CHECK(triggered[0] == 1 && triggered[1] == 0 && done[0] == 0 && done[1] == 0);
  CHECK(trigger_step[0] == 2 && trigger_step[1] == -1 && trigger_kind[0] == 1 && trigger_kind[1] == 0);
  CHECK(steps[0] == 1 && steps[1] == 1 && max_score[0] == 0.9f && max_score[1] == 0.4f);

  // k = 3, t = 300 < min_step: row 0 plain DDIM (√0.36 = 0.6, √0.64 = 0.8), row 1 falls back on NaN
  const float row1_xt[2] = {x_t[2], x_t[3]};
  score[0] = 0.95f, score[1] = NAN;
  a.k = 3, a.t = 300, a.ab_next = 0.36;
  glad_update(Device::kCPU, a);
  CHECK_NEAR(x_t[0], 0.6 * 0.5 + 0.8, 1e-6);
  CHECK_NEAR(x_t[1], -0.6 * 0.5 - 0.8, 1e-6);
  CHECK(x_t[2] == row1_xt[0] && x_t[3] == row1_xt[1] && recon[2] == in[2] && recon[3] == in[3]);
  CHECK(done[0] == 0 && done[1] == 1 && trigger_kind[1] == 2 && trigger_step[1] == 3);
  CHECK(max_score[0] == 0.9f && std::isnan(max_score[1]) && steps[0] == 2 && steps[1] == 2);

  // the last step: ᾱ' = 1, row 0's x_t and recon are x0 = gen; row 1 (done) keeps every bit
  float before[4];
  std::memcpy(before, x_t, sizeof(before));
  a.k = 4, a.t = 130, a.ab_next = 1.0, a.last = true;
  glad_update(Device::kCPU, a);
  CHECK(x_t[0] == gen[0] && x_t[1] == gen[1] && recon[0] == gen[0] && recon[1] == gen[1]);
  CHECK(x_t[2] == before[2] && x_t[3] == before[3] && recon[2] == in[2] && recon[3] == in[3]);
  CHECK(done[0] == 1 && steps[0] == 3 && steps[1] == 2);

  GladUpdateArgs bad = a;
  bad.tau = NAN;
  CHECK_THROWS_STATUS(glad_update(Device::kCPU, bad), Status::kInvalidArgument);
  bad = a;
  bad.steps = nullptr;
  CHECK_THROWS_STATUS(glad_update(Device::kCPU, bad), Status::kInvalidArgument);
  bad = a;
  bad.ab_next = 0.0;
  CHECK_THROWS_STATUS(glad_update(Device::kCPU, bad), Status::kInvalidArgument);
  GladPredictArgs badp = p;
  badp.sqrt_ab = 0.f;
  CHECK_THROWS_STATUS(glad_predict(Device::kCPU, badp), Status::kInvalidArgument);
}

// The authors' fallback (fallback_stops = false, the default): the row that falls back at k = 3
// takes x̂0 = x0_in there and goes on with plain DDIM; it finishes at the last step with x0_gen.
static void test_glad_fallback_continues() {
  float gen[4] = {0.5f, -0.5f, 0.2f, 0.4f}, in[4] = {0.1f, 0.3f, -0.2f, 0.6f};
  float eps[4] = {1.f, -1.f, 0.5f, 0.5f}, w[4] = {0.25f, 0.75f, 0.5f, 0.5f};
  float x_t[4] = {9.f, 9.f, 9.f, 9.f}, recon[4] = {0.f, 0.f, 0.f, 0.f};
  uint8_t done[2] = {0, 0}, triggered[2] = {0, 0};
  int64_t steps[2] = {1, 1}, trigger_step[2] = {-1, -1}, trigger_kind[2] = {0, 0};
  float max_score[2] = {-INFINITY, -INFINITY};
  float score[2] = {0.9f, 0.4f};
  GladUpdateArgs a;
  CHECK(!a.fallback_stops);
  a.x0_gen = gen, a.x0_in = in, a.eps = eps, a.w = w, a.score = score, a.x_t = x_t, a.recon = recon;
  a.done = done, a.triggered = triggered, a.steps = steps, a.trigger_step = trigger_step;
  a.trigger_kind = trigger_kind, a.max_score = max_score;
  a.B = 2, a.C = 1, a.H = 1, a.W = 2, a.k = 3, a.t = 300, a.min_step = 350, a.ab_next = 0.36, a.tau = 0.5f;
  glad_update(Device::kCPU, a);
  // row 0 triggers: x0 = (0.2, −0.3); row 1 falls back: x0 = in = (−0.2, 0.6); x_t' = 0.6·x0 + 0.8·ε
  const float want[4] = {0.92f, -0.98f, 0.28f, 0.76f};
  for (int i = 0; i < 4; ++i) CHECK_NEAR(x_t[i], want[i], 1e-6);
  CHECK(done[0] == 0 && done[1] == 0 && trigger_kind[0] == 1 && trigger_kind[1] == 2 && trigger_step[1] == 3);
  CHECK(triggered[1] == 0 && steps[1] == 2 && recon[2] == 0.f && recon[3] == 0.f);
  // the last step: neither row checks any more (row 1's score is not read), both finish on x0_gen
  score[0] = 0.1f, score[1] = 0.99f;
  a.k = 4, a.t = 130, a.ab_next = 1.0, a.last = true;
  glad_update(Device::kCPU, a);
  for (int i = 0; i < 4; ++i) CHECK(x_t[i] == gen[i] && recon[i] == gen[i]);
  CHECK(done[0] == 1 && done[1] == 1 && steps[1] == 3 && trigger_kind[1] == 2 && trigger_step[1] == 3);
  CHECK(max_score[1] == 0.4f && triggered[1] == 0);
}

// The comparison helper of these tests (and test_cuda's): a NaN anywhere is
// the result, wherever finite differences follow it.
static void test_max_abs_diff() {
  CHECK(std::isnan(drdc_test::max_abs_diff({NAN, 1.f, 2.f}, {0.f, 1.f, 2.f})));
  CHECK(std::isnan(drdc_test::max_abs_diff({0.f, 1.f}, {0.f, NAN})));
  CHECK(drdc_test::max_abs_diff({0.f, 1.f, -3.f}, {0.5f, 1.f, -1.f}) == 2.f);
  CHECK(std::isinf(drdc_test::max_abs_diff({0.f}, {0.f, 1.f})));
}

static void test_build_info() {
  std::string message;
  const Status s = call([] { (void)parse_device("tpu"); }, &message);
  CHECK(s == Status::kInvalidArgument);
  CHECK(message.find("tpu") != std::string::npos);
  if (!built_with_cuda()) {
    PrepareArgs a;
    float dummy[1];
    int32_t lab[1] = {0};
    a.x = a.fill_noise = a.eps0 = dummy, a.xt = dummy, a.unet_in = dummy, a.labels = lab;
    a.B = a.J = a.K = a.H = a.W = 1;
    CHECK_THROWS_STATUS(prepare(Device::kCUDA, a), Status::kNotCompiled);
  }
  if (!built_with_tensorrt()) CHECK_THROWS_STATUS(trt::Engine("missing.plan"), Status::kNotCompiled);
}

int main() {
  drdc_test::run_case("test helper: max_abs_diff keeps NaN", test_max_abs_diff);
  drdc_test::run_case("labels match masks.py", test_labels);
  drdc_test::run_case("schedule matches schedule.py", test_schedule);
  drdc_test::run_case("philox known answers, gaussian moments", test_philox);
  drdc_test::run_case("half conversion", test_half);
  drdc_test::run_case("fuse known answers", test_fuse_known);
  drdc_test::run_case("float max through integer atomics", test_float_max_op);
  drdc_test::run_case("fuse on CUDA: width limit", test_fuse_cuda_width_limit);
  drdc_test::run_case("GLAD step known answers", test_glad_known);
  drdc_test::run_case("GLAD fallback continues (the authors' rule)", test_glad_fallback_continues);
  drdc_test::run_case("status and build info", test_build_info);
  return drdc_test::finish();
}
