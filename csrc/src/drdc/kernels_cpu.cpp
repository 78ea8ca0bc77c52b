// CPU implementation of DRDC's fused kernels prepare / step / fuse (definition:
// drdc_trt/ops.py). Parallel over images × rows of pixels; every output element
// is written by one worker, so results do not depend on the thread count.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <vector>

#include "core/backends.h"
#include "core/half.h"
#include "core/kernel_math.h"
#include "core/parallel.h"
#include "drdc/drdc_math.h"

namespace drdc {
namespace detail {
namespace {

// Network buffers: float, or IEEE half stored as its bits.
using Half = uint16_t;
inline float load(const float* p, int64_t i) { return p[i]; }
inline float load(const Half* p, int64_t i) { return half_bits_to_float(p[i]); }
inline void store(float* p, int64_t i, float v) { p[i] = v; }
inline void store(Half* p, int64_t i, float v) { p[i] = float_to_half_bits(v); }

constexpr int64_t kMinChunk = 4;  // rows of pixels per worker, below that threads cost more

template <class Net>
void prepare_impl(const PrepareArgs& a) {
  const int64_t HW = static_cast<int64_t>(a.H) * a.W;
  const int64_t N = static_cast<int64_t>(a.B) * a.J * a.K;
  Net* unet = static_cast<Net*>(a.unet_in);
  parallel_for(N * 3, kMinChunk, [&](int64_t lo, int64_t hi) {
    for (int64_t nc = lo; nc < hi; ++nc) {
      const int64_t n = nc / 3;
      const int c = static_cast<int>(nc % 3);
      const RowIndex r = row_index(n, a.J, a.K);
      const int32_t* lab = a.labels + r.j * HW;
      const float* xb = a.x + (static_cast<int64_t>(r.b) * 3 + c) * HW;
      const int64_t plane = nc * HW;
      Net* u_xt = unet + (n * 6 + c) * HW;
      Net* u_c = unet + (n * 6 + 3 + c) * HW;
      for (int64_t p = 0; p < HW; ++p) {
        const float cond = lab[p] != r.k ? xb[p] : a.fill_noise[plane + p];
        const float xt = blend(a.sqrt_ab, cond, a.sqrt_1mab, a.eps0[plane + p]);
        a.xt[plane + p] = xt;
        store(u_xt, p, xt);
        store(u_c, p, cond);
      }
    }
  });
}

int lcm_of(const StepArgs& a) {
  int l = 1;
  for (int i = 0; i < a.num_pool_factors; ++i) l = std::lcm(l, a.pool_factors[i]);
  return l;  // divides H and W, since every factor does
}

// The element-wise part of step on one contiguous run of pixels of one
// (row, channel) plane: x_t', its copy into unet_in, and d = x − x̂0 for the
// heat. Outputs never alias inputs (kernels.h), hence restrict, which (with
// both select branches computed) lets the compiler vectorise the loop.
template <class Net>
void step_plane(const float* DRDC_RESTRICT xc, const float* DRDC_RESTRICT xt_in, const Net* DRDC_RESTRICT e_in,
                const float* DRDC_RESTRICT noise, const int32_t* DRDC_RESTRICT lab, int k,
                float* DRDC_RESTRICT xt_out, Net* DRDC_RESTRICT u, float* DRDC_RESTRICT dk, int64_t count, float at,
                float st, float an, float sn, bool clip) {
  for (int64_t q = 0; q < count; ++q) {
    const float e = load(e_in, q), xv = xc[q], nz = noise[q];
    const float x0 = predict_x0(xt_in[q], e, at, st, clip);
    const float known = blend(an, xv, sn, nz), unknown = blend(an, x0, sn, e);
    const float v = lab[q] != k ? known : unknown;
    xt_out[q] = v;
    store(u, q, v);
    dk[q] = sub(xv, x0);
  }
}

// One band of F = lcm(pool factors) pixel rows of one image at a time: every
// x̂0 is computed once, kept as d = x − x̂0 for all K rows of a spec, and the
// f×f block means are formed from that buffer (no recomputation, and the
// inner loops run over contiguous pixels).
template <class Net>
void step_impl(const StepArgs& a) {
  const int W = a.W, K = a.K, F = lcm_of(a);
  const int64_t HW = static_cast<int64_t>(a.H) * W, band = static_cast<int64_t>(F) * W;
  const Net* eps = static_cast<const Net*>(a.eps);
  Net* unet = static_cast<Net*>(a.unet_in);
  // Locals, not a.*: the stores below could alias the struct's floats.
  const float at = a.sqrt_ab, st = a.sqrt_1mab, an = a.sqrt_ab_next, sn = a.sqrt_1mab_next;
  const bool clip = a.clip_x0;
  const int bands = a.H / F;
  parallel_for(static_cast<int64_t>(a.B) * bands, 1, [&](int64_t lo, int64_t hi) {
    std::vector<float> d(static_cast<size_t>(K * 3 * band)), h(static_cast<size_t>(band)),
        total(static_cast<size_t>(band)), norms(static_cast<size_t>(K));
    for (int64_t task = lo; task < hi; ++task) {
      const int b = static_cast<int>(task / bands);
      const int64_t off = (task % bands) * band;  // first pixel of the band
      const float* xb = a.x + static_cast<int64_t>(b) * 3 * HW + off;
      std::fill(total.begin(), total.end(), 0.f);
      for (int j = 0; j < a.J; ++j) {
        const int32_t* lab = a.labels + j * HW + off;
        for (int k = 0; k < K; ++k) {
          const int64_t n = (static_cast<int64_t>(b) * a.J + j) * K + k;
          for (int c = 0; c < 3; ++c) {
            const int64_t i0 = (n * 3 + c) * HW + off;
            step_plane(xb + c * HW, a.xt_in + i0, eps + i0, a.noise + i0, lab, k, a.xt_out + i0,
                       unet + (n * 6 + c) * HW + off, d.data() + static_cast<int64_t>(k * 3 + c) * band, band, at, st,
                       an, sn, clip);
          }
        }
        // Heat of spec j: Σ_f ‖pooled_f(d)‖ on the row k = labels[j, p] of each pixel.
        std::fill(h.begin(), h.end(), 0.f);
        for (int fi = 0; fi < a.num_pool_factors; ++fi) {
          const int f = a.pool_factors[fi];
          if (f == 1) {
            for (int64_t q = 0; q < band; ++q) {
              const int k = lab[q];
              if (k < 0 || k >= K) continue;
              const float* dk = d.data() + static_cast<int64_t>(k) * 3 * band;
              h[q] = add(h[q], norm3(dk[q], dk[band + q], dk[2 * band + q]));
            }
            continue;
          }
          const float area = static_cast<float>(f * f);
          for (int by = 0; by < F; by += f)
            for (int bx = 0; bx < W; bx += f) {
              // Block means of every row k (the block's pixels may belong to
              // different sets: each pixel takes the mean of its own row).
              for (int k = 0; k < K; ++k) {
                float m[3];
                for (int c = 0; c < 3; ++c) {
                  const float* dk = d.data() + static_cast<int64_t>(k * 3 + c) * band;
                  float s = 0.f;  // row-major window order, as avg_pool2d sums
                  for (int yy = by; yy < by + f; ++yy)
                    for (int xx = bx; xx < bx + f; ++xx) s = add(s, dk[static_cast<int64_t>(yy) * W + xx]);
                  m[c] = div(s, area);
                }
                norms[static_cast<size_t>(k)] = norm3(m[0], m[1], m[2]);
              }
              for (int yy = by; yy < by + f; ++yy)
                for (int xx = bx; xx < bx + f; ++xx) {
                  const int64_t q = static_cast<int64_t>(yy) * W + xx;
                  const int k = lab[q];
                  if (k >= 0 && k < K) h[static_cast<size_t>(q)] = add(h[static_cast<size_t>(q)], norms[static_cast<size_t>(k)]);
                }
            }
        }
        for (int64_t q = 0; q < band; ++q) total[static_cast<size_t>(q)] = add(total[static_cast<size_t>(q)], h[static_cast<size_t>(q)]);
      }
      float* hp = a.heat + static_cast<int64_t>(b) * HW + off;
      for (int64_t q = 0; q < band; ++q) hp[q] = add(hp[q], total[static_cast<size_t>(q)]);
    }
  });
}

// NaN-propagating max, as torch.amax.
inline float max_nan(float a, float b) { return (std::isnan(a) || a >= b) ? a : b; }

void fuse_image(const FuseArgs& a, int b) {
  const int H = a.H, W = a.W;
  const int64_t HW = static_cast<int64_t>(H) * W;
  const float* heat = a.heat + b * HW;
  const float* base = a.base + static_cast<int64_t>(b) * a.h * a.w;
  float* hd = a.diff_map + b * HW;
  float* hb = a.base_up + b * HW;
  float* fin = a.final_map + b * HW;
  const int r = a.mean_filter / 2;
  const float scale_y = static_cast<float>(a.h) / static_cast<float>(H);
  const float scale_x = static_cast<float>(a.w) / static_cast<float>(W);
  const float lam = static_cast<float>(a.lam), olam = static_cast<float>(1.0 - a.lam);
  std::vector<LinearTap> taps_x(static_cast<size_t>(W));
  for (int x = 0; x < W; ++x) taps_x[static_cast<size_t>(x)] = linear_tap(x, scale_x, a.w);
  for (int y = 0; y < H; ++y) {
    const LinearTap ty = linear_tap(y, scale_y, a.h);
    const int y0 = std::max(0, y - r), y1 = std::min(H, y + r + 1);
    for (int x = 0; x < W; ++x) {
      // Mean filter, count_include_pad=False: divide by the in-image taps only.
      const int x0 = std::max(0, x - r), x1 = std::min(W, x + r + 1);
      float s = 0.f;
      for (int yy = y0; yy < y1; ++yy)
        for (int xx = x0; xx < x1; ++xx) s = add(s, mul(heat[static_cast<int64_t>(yy) * W + xx], a.inv_count));
      const float d = div(s, static_cast<float>((y1 - y0) * (x1 - x0)));
      const LinearTap& tx = taps_x[static_cast<size_t>(x)];
      const float* r0 = base + static_cast<int64_t>(ty.i0) * a.w;
      const float* r1 = base + static_cast<int64_t>(ty.i1) * a.w;
      const float t0 = add(mul(r0[tx.i0], tx.l0), mul(r0[tx.i1], tx.l1));
      const float t1 = add(mul(r1[tx.i0], tx.l0), mul(r1[tx.i1], tx.l1));
      const float u = add(mul(t0, ty.l0), mul(t1, ty.l1));
      const int64_t p = static_cast<int64_t>(y) * W + x;
      hd[p] = d;
      hb[p] = u;
      fin[p] = add(div(mul(lam, sub(d, a.mu_d)), a.sd_d), div(mul(olam, sub(u, a.mu_b)), a.sd_b));
    }
  }
  // Image score: max of the window×window box mean (stride 1, no padding).
  // Column sums, then each window's sum over its columns, in double (a sliding sum would
  // turn an Inf that leaves the window into Inf − Inf = NaN; torch.amax keeps the Inf).
  const int win = a.score_window;
  const double area = static_cast<double>(win) * win;
  std::vector<double> col(static_cast<size_t>(W));
  float best = -std::numeric_limits<float>::infinity();
  for (int y = 0; y + win <= H; ++y) {
    for (int x = 0; x < W; ++x) {
      double s = 0.0;
      for (int dy = 0; dy < win; ++dy) s += fin[static_cast<int64_t>(y + dy) * W + x];
      col[static_cast<size_t>(x)] = s;
    }
    for (int x = 0; x + win <= W; ++x) {
      double s = 0.0;
      for (int dx = 0; dx < win; ++dx) s += col[static_cast<size_t>(x + dx)];
      best = max_nan(best, static_cast<float>(s / area));
    }
  }
  a.score[b] = best;
}

}  // namespace

void prepare_cpu(const PrepareArgs& args) {
  if (args.net_dtype == DType::kFloat16)
    prepare_impl<Half>(args);
  else
    prepare_impl<float>(args);
}

void step_cpu(const StepArgs& args) {
  if (args.net_dtype == DType::kFloat16)
    step_impl<Half>(args);
  else
    step_impl<float>(args);
}

void fuse_cpu(const FuseArgs& args) {
  parallel_for(args.B, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t b = lo; b < hi; ++b) fuse_image(args, static_cast<int>(b));
  });
}

}  // namespace detail
}  // namespace drdc
