// Example C++ host of the drdc core, no Python involved.
//
//   drdc_host --analytic [--device cpu|cuda] [--size S] [--batch B]
//       Runs the DDIM refiner with the analytic runner (ε = the true noise)
//       on a synthetic image and checks that it recovers the image, then
//       fuses a heatmap and prints the image score. Needs nothing else, so
//       it runs in every build (CPU always, CUDA when built and a GPU is
//       present; exit 77 = skipped when no GPU).
//
//   drdc_host --bundle BUNDLE_DIR --backend openvino [--device CPU|GPU|NPU|AUTO]
//             [--precision f32|bf16|int8] [--threads N] [--streams N] [--repeat N] [--out DIR] IMAGE...
//       Scores the images with the bundle on OpenVINO (CPU by default; int8: the
//       bundle's int8 networks from `drdc export --int8`; --streams: U-Net calls
//       split over N OpenVINO CPU streams, -1 OpenVINO's count (default), 0 off): base
//       network, the C++ refiner with the OpenVINO U-Net and the bundle's loop
//       noise, per-pixel statistics, fusion. IMAGE: an uncompressed 24/32-bit
//       BMP of the bundle's size, or a 3×S×S float32 .npy in [-1, 1]. Writes
//       DIR/results.json, results.csv and maps/NNNN_<stem>_anomaly_map.npy as
//       `drdc detect` does, and prints the per-image latency (--repeat N: N
//       passes, the first one untimed). See host_openvino.cpp.
//
//   drdc_host BUNDLE_DIR [--image RAW] [--out MAP]      (--backend tensorrt)
//       Loads a bundle written by drdc_trt.export (manifest.json, base.plan,
//       unet.plan, the loop noise noise_*.npy) and scores one image with
//       TensorRT on the GPU, as the Python runtime does. RAW: 3×S×S float32,
//       RGB, CHW, values pixel/127.5 − 1 in [-1, 1], no header; without it a
//       flat grey image. MAP: where to write the S×S float32 anomaly map.
//       Needs a build with TensorRT.
//
//   Both bundle modes run DRDC bundles: a bundle whose manifest.json names another
//   method ("method": "diffusionad" or "glad") is refused with a message naming it.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "drdc/drdc.h"
#include "host_io.h"
#include "host_openvino.h"
#include "json_lite.h"

namespace {

struct Options {
  bool analytic = false;
  std::string bundle, image, out;
  drdc::Device device = drdc::Device::kCPU;
  int size = 64, batch = 2;
  std::string backend, device_text = "cpu", precision = "f32";
  std::vector<std::string> images;
  int threads = 0, repeat = 1, streams = -1;
};

Options parse_args(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw std::runtime_error("missing value after " + a);
      return argv[++i];
    };
    if (a == "--analytic") o.analytic = true;
    else if (a == "--device") o.device_text = next();
    else if (a == "--bundle") o.bundle = next();
    else if (a == "--backend") o.backend = next();
    else if (a == "--precision") o.precision = next();
    else if (a == "--threads") o.threads = std::stoi(next());
    else if (a == "--streams") o.streams = std::stoi(next());
    else if (a == "--repeat") o.repeat = std::stoi(next());
    else if (a == "--size") o.size = std::stoi(next());
    else if (a == "--batch") o.batch = std::stoi(next());
    else if (a == "--image") o.image = next();
    else if (a == "--out") o.out = next();
    else if (!a.empty() && a[0] != '-') o.images.push_back(a);
    else throw std::runtime_error("unknown option " + a);
  }
  if (o.bundle.empty() && !o.images.empty()) {  // drdc_host BUNDLE_DIR ... (first positional)
    o.bundle = o.images.front();
    o.images.erase(o.images.begin());
  }
  if (o.backend.empty()) o.backend = drdc::built_with_tensorrt() ? "tensorrt" : "openvino";
  if (o.analytic) o.device = drdc::parse_device(o.device_text.c_str());
  if (!o.analytic && o.bundle.empty())
    throw std::runtime_error("usage: drdc_host --analytic | --bundle BUNDLE_DIR --backend openvino IMAGE... | BUNDLE_DIR");
  if (!o.analytic && o.backend != "openvino" && o.backend != "tensorrt")
    throw std::runtime_error("--backend " + o.backend + ": choose openvino or tensorrt");
  return o;
}

// Analytic mode: the refiner must give back the input, and a defect-free
// recovery means a (nearly) zero diffusion heatmap.
int run_analytic(const Options& o) {
  using namespace drdc;
  if (o.device == Device::kCUDA && cuda_device_count() == 0) {
    std::printf("no CUDA device: skipped\n");
    return 77;
  }
  const int B = o.batch, S = o.size, K = 2;
  const std::vector<int> grids{S / 8, S / 4};
  RefinerConfig cfg;
  cfg.device = o.device;
  cfg.batch = B, cfg.height = cfg.width = S, cfg.num_sets = K;
  cfg.t0 = 250, cfg.num_steps = 10, cfg.pool_factors = {1, 2};
  const Schedule schedule = Schedule::linear();
  const LabelMaps labels = grid_labels(S, grids, K, /*seed=*/0);

  std::vector<float> x(static_cast<size_t>(B) * 3 * S * S);
  for (int b = 0; b < B; ++b)
    for (int c = 0; c < 3; ++c)
      for (int y = 0; y < S; ++y)
        for (int xx = 0; xx < S; ++xx)
          x[((static_cast<size_t>(b) * 3 + c) * S + y) * S + xx] =
              0.8f * std::sin(0.2f * xx + 0.3f * y + c + b) * std::cos(0.05f * (xx - y));
  Stream stream(o.device);
  Buffer dx(o.device, x.size() * sizeof(float));
  dx.upload(x.data(), dx.bytes());
  const int rows_per_image = static_cast<int>(grids.size()) * K;
  auto runner = std::make_shared<AnalyticRunner>(o.device, DType::kFloat32, dx.as<float>(), B, rows_per_image, S, S,
                                                 schedule);
  Refiner refiner(cfg, schedule, labels, runner);
  refiner.set_noise_seed(2024);
  Buffer heat(o.device, static_cast<size_t>(B) * S * S * sizeof(float));
  Buffer xt(o.device, static_cast<size_t>(refiner.rows()) * 3 * S * S * sizeof(float));
  int count = 0;
  for (int rep = 0; rep < 3; ++rep)  // on CUDA: eager, capture, replay
    count = refiner.run(dx.as<float>(), heat.as<float>(), xt.as<float>(), {}, stream.handle());

  // Fuse with a flat base map (h = w = S/16): the score then reflects only
  // the diffusion term.
  const int hs = std::max(1, S / 16);
  std::vector<float> base(static_cast<size_t>(B) * hs * hs, 0.5f);
  Buffer dbase(o.device, base.size() * sizeof(float));
  dbase.upload(base.data(), dbase.bytes());
  Buffer fin(o.device, heat.bytes()), hd(o.device, heat.bytes()), hb(o.device, heat.bytes());
  Buffer score(o.device, static_cast<size_t>(B) * sizeof(float));
  FuseArgs fa;
  fa.heat = heat.as<float>(), fa.base = dbase.as<float>(), fa.final_map = fin.as<float>();
  fa.diff_map = hd.as<float>(), fa.base_up = hb.as<float>(), fa.score = score.as<float>();
  fa.B = B, fa.H = fa.W = S, fa.h = fa.w = hs, fa.inv_count = 1.f / static_cast<float>(count);
  fa.mean_filter = 5, fa.lam = 0.9, fa.score_window = std::max(1, S * 16 / 224);
  fuse(o.device, fa, stream.handle());
  stream.synchronize();

  std::vector<float> xt_h(xt.bytes() / sizeof(float)), score_h(static_cast<size_t>(B));
  xt.download(xt_h.data(), xt.bytes());
  score.download(score_h.data(), score.bytes());
  const size_t img = static_cast<size_t>(3) * S * S;
  float err = 0.f;
  for (int r = 0; r < refiner.rows(); ++r)
    for (size_t i = 0; i < img; ++i)
      err = std::max(err, std::fabs(xt_h[r * img + i] - x[(r / rows_per_image) * img + i]));
  std::printf("drdc %s, device %s: %d rows of %dx%d, %d steps from t0=%d, %d heat terms per pixel\n",
              version(), device_name(o.device), refiner.rows(), S, S, cfg.num_steps, cfg.t0, count);
  std::printf("max |reconstruction - input| = %.3g (analytic runner: exact recovery expected)\n", err);
  for (int b = 0; b < B; ++b) std::printf("image %d: score %.6f\n", b, score_h[static_cast<size_t>(b)]);
  if (o.device == Device::kCUDA)
    std::printf("CUDA graph: %d capture(s), %d replay(s)%s%s\n", refiner.graph_captures(), refiner.graph_replays(),
                refiner.graph_error().empty() ? "" : "; disabled: ", refiner.graph_error().c_str());
  return err <= 1e-5f ? 0 : 1;
}

std::string read_text(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw drdc::Error(drdc::Status::kIoError, "cannot open " + path);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

// The four normalisation statistics [μ_diff, σ_diff, μ_base, σ_base].
std::vector<float> read_stats(const json_lite::Value& m) {
  if (m.has("normalization") && m["normalization"].type == json_lite::Value::kArray &&
      m["normalization"].array.size() == 4) {
    std::vector<float> v;
    for (const auto& e : m["normalization"].array) v.push_back(static_cast<float>(e.number));
    return v;
  }
  std::fprintf(stderr, "warning: manifest has no normalization [mu_diff, sd_diff, mu_base, sd_base]; using (0, 1, 0, 1)\n");
  return {0.f, 1.f, 0.f, 1.f};
}

// A little-endian float32, C-order .npy file (the bundle's noise arrays).
std::vector<float> read_npy_f32(const std::string& path, std::vector<int64_t>& shape) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw drdc::Error(drdc::Status::kIoError, "cannot open " + path);
  char magic[8];
  f.read(magic, 8);
  if (!f || std::memcmp(magic, "\x93NUMPY", 6) != 0) throw drdc::Error(drdc::Status::kIoError, path + ": not a .npy file");
  uint32_t header_len = 0;
  if (magic[6] == 1) {
    unsigned char b[2];
    f.read(reinterpret_cast<char*>(b), 2);
    header_len = b[0] | (b[1] << 8);
  } else {
    unsigned char b[4];
    f.read(reinterpret_cast<char*>(b), 4);
    header_len = b[0] | (b[1] << 8) | (b[2] << 16) | (static_cast<uint32_t>(b[3]) << 24);
  }
  std::string header(header_len, '\0');
  f.read(&header[0], header_len);
  if (header.find("'<f4'") == std::string::npos || header.find("'fortran_order': False") == std::string::npos)
    throw drdc::Error(drdc::Status::kIoError, path + ": expected little-endian float32 in C order");
  const size_t open = header.find('(', header.find("'shape'")), close = header.find(')', open);
  shape.clear();
  std::stringstream dims(header.substr(open + 1, close - open - 1));
  std::string tok;
  size_t count = 1;
  while (std::getline(dims, tok, ','))
    if (tok.find_first_not_of(' ') != std::string::npos) {
      shape.push_back(std::stoll(tok));
      count *= static_cast<size_t>(shape.back());
    }
  std::vector<float> data(count);
  if (!f.read(reinterpret_cast<char*>(data.data()), static_cast<std::streamsize>(count * sizeof(float))))
    throw drdc::Error(drdc::Status::kIoError, path + ": truncated");
  return data;
}

std::string plan_file(const json_lite::Value& m, const char* net) {
  if (m.has("tensorrt") && m["tensorrt"].has("plans") && m["tensorrt"]["plans"].has(net) &&
      m["tensorrt"]["plans"][net].has("file"))
    return m["tensorrt"]["plans"][net]["file"].string;
  return std::string(net) + ".plan";
}

// Bundle mode: base network + diffusion refinement with TensorRT.
int run_bundle(const Options& o) {
  using namespace drdc;
  if (!built_with_tensorrt()) {
    std::fprintf(stderr, "this drdc build has no TensorRT runner; rebuild with TensorRT to run a bundle "
                         "(drdc_host --analytic runs without it)\n");
    return 2;
  }
  const json_lite::Value m = json_lite::parse(read_text(o.bundle + "/manifest.json"));
  const int S = m.integer({"config", "image_size"}, 224);
  // The border margin and the contrast-normalised heat run in the Python runtimes only so far;
  // a bundle that uses them would give other scores here, so it is refused.
  const bool has_fusion = m.has("config") && m["config"].has("fusion");
  if (m.get({"config", "diffusion", "margin"}, 0) != 0.0 ||
      (has_fusion && m["config"]["fusion"].has("heat_norm") && m["config"]["fusion"]["heat_norm"].string != "none"))
    throw Error(Status::kInvalidArgument, o.bundle + "/manifest.json: config.diffusion.margin or "
                "config.fusion.heat_norm is set; this host runs bundles without them (use drdc_trt.runtime)");
  const std::vector<int> grids = m.ints({"config", "diffusion", "grid_sizes"}, {8, 16});
  RefinerConfig cfg;
  cfg.device = Device::kCUDA;
  cfg.batch = 1, cfg.height = cfg.width = S;
  cfg.num_sets = m.integer({"config", "diffusion", "num_sets"}, 2);
  cfg.t0 = m.integer({"config", "diffusion", "t0"}, 250);
  cfg.num_steps = m.integer({"config", "diffusion", "num_steps"}, 10);
  cfg.clip_x0 = m.get({"config", "diffusion", "clip_x0"}, 1) != 0.0;
  cfg.pool_factors = m.ints({"fusion", "pool_factors"}, m.ints({"config", "fusion", "pool_factors"}, {1, 2}));
  const Schedule schedule = Schedule::linear(m.integer({"config", "diffusion", "num_train_timesteps"}, 1000),
                                             m.get({"config", "diffusion", "beta_start"}, 1e-4),
                                             m.get({"config", "diffusion", "beta_end"}, 0.02));
  const LabelMaps labels = grid_labels(S, grids, cfg.num_sets, static_cast<uint64_t>(m.integer({"label_seed"}, 0)));
  const std::vector<float> stats = read_stats(m);

  // The image in [-1, 1] feeds both networks (base.onnx holds the backbone's
  // ImageNet normalisation).
  std::vector<float> x(static_cast<size_t>(3) * S * S, 0.f);
  if (!o.image.empty()) {
    std::ifstream f(o.image, std::ios::binary);
    if (!f.read(reinterpret_cast<char*>(x.data()), static_cast<std::streamsize>(x.size() * sizeof(float))))
      throw Error(Status::kIoError, o.image + ": expected 3x" + std::to_string(S) + "x" + std::to_string(S) + " float32");
  }
  Stream stream(Device::kCUDA);
  Buffer dx(Device::kCUDA, x.size() * 4);
  dx.upload(x.data(), dx.bytes());

  // Base network: `image` 1×3×S×S → `base_map` 1×h×w (names found by role).
  auto base_engine = std::make_shared<trt::Engine>(o.bundle + "/" + plan_file(m, "base"));
  std::string in_name, out_name;
  for (const auto& t : base_engine->tensors()) (t.is_input ? in_name : out_name) = t.name;
  base_engine->set_input_shape(in_name, {1, 3, S, S});
  const std::vector<int64_t> bshape = base_engine->resolved_shape(out_name);
  const int bh = static_cast<int>(bshape[bshape.size() - 2]), bw = static_cast<int>(bshape.back());
  Buffer base(Device::kCUDA, static_cast<size_t>(bh) * bw * 4);
  base_engine->set_address(in_name, dx.data());
  base_engine->set_address(out_name, base.data());
  base_engine->enqueue(stream.handle());

  // The loop noise the bundle carries (rows of one image): the same numbers
  // as the Python runtime, so the scores match.
  Buffer fill, start, steps;
  LoopNoise noise;
  if (m.has("noise")) {
    std::vector<int64_t> shape;
    Buffer* dst[3] = {&fill, &start, &steps};
    const char* keys[3] = {"fill", "start", "steps"};
    for (int i = 0; i < 3; ++i) {
      const std::vector<float> a = read_npy_f32(o.bundle + "/" + m["noise"][keys[i]]["file"].string, shape);
      *dst[i] = Buffer(Device::kCUDA, a.size() * 4);
      dst[i]->upload(a.data(), dst[i]->bytes());
    }
    noise = {fill.as<float>(), start.as<float>(), steps.as<float>()};
  } else {
    std::fprintf(stderr, "warning: manifest has no noise section; drawing noise with the C++ generator\n");
  }

  auto unet = std::make_shared<trt::Engine>(o.bundle + "/unet.plan");
  Refiner refiner(cfg, schedule, labels, std::make_shared<trt::TensorRtRunner>(unet));
  refiner.set_noise_seed(static_cast<uint64_t>(m.integer({"noise_seed"}, 0)));
  Buffer heat(Device::kCUDA, static_cast<size_t>(S) * S * 4);
  const int count = refiner.run(dx.as<float>(), heat.as<float>(), nullptr, noise, stream.handle());
  if (m.has("pixel_stats") && m["pixel_stats"].type == json_lite::Value::kObject) {
    // fusion.diff_norm = "pixel": per-pixel z-scores of the mean heat, before the fusion
    // (drdc_trt.fusion.PixelStats.apply); one image, so on the host.
    std::vector<int64_t> shape;
    const std::vector<float> mean = read_npy_f32(o.bundle + "/" + m["pixel_stats"]["mean"]["file"].string, shape);
    const std::vector<float> sd = read_npy_f32(o.bundle + "/" + m["pixel_stats"]["std"]["file"].string, shape);
    const std::size_t n = static_cast<std::size_t>(S) * S;
    if (mean.size() != n || sd.size() != n)
      throw Error(Status::kInvalidArgument, o.bundle + ": pixel_stats arrays must hold " + std::to_string(S) + "x" +
                  std::to_string(S) + " floats");
    stream.synchronize();
    std::vector<float> h(n);
    heat.download(h.data(), heat.bytes());
    const float c = static_cast<float>(count);
    for (std::size_t i = 0; i < n; ++i) h[i] = (h[i] / c - mean[i]) / sd[i] * c;
    heat.upload(h.data(), heat.bytes());
  }

  Buffer fin(Device::kCUDA, heat.bytes()), hd(Device::kCUDA, heat.bytes()), hb(Device::kCUDA, heat.bytes());
  Buffer score(Device::kCUDA, 4);
  FuseArgs fa;
  fa.heat = heat.as<float>(), fa.base = base.as<float>(), fa.final_map = fin.as<float>();
  fa.diff_map = hd.as<float>(), fa.base_up = hb.as<float>(), fa.score = score.as<float>();
  fa.B = 1, fa.H = fa.W = S, fa.h = bh, fa.w = bw, fa.inv_count = 1.f / static_cast<float>(count);
  fa.mean_filter = m.integer({"fusion", "mean_filter"}, m.integer({"config", "fusion", "mean_filter"}, 5));
  fa.lam = m.get({"fusion", "lam"}, m.get({"config", "fusion", "lam"}, 0.9));
  fa.mu_d = stats[0], fa.sd_d = stats[1], fa.mu_b = stats[2], fa.sd_b = stats[3];
  const double window_at_s = std::round(m.get({"config", "fusion", "score_window_at_224"}, 16) * S / 224.0);
  fa.score_window = m.integer({"fusion", "score_window"}, static_cast<int>(std::clamp(window_at_s, 1.0, static_cast<double>(S))));
  fuse(Device::kCUDA, fa, stream.handle());
  stream.synchronize();
  float s = 0.f;
  score.download(&s, 4);
  std::printf("TensorRT %s, image %dx%d, %d U-Net calls on %d rows: score %.6f\n", unet->trt_version().c_str(), S, S,
              cfg.num_steps, refiner.rows(), s);
  if (!o.out.empty()) {
    std::vector<float> map(static_cast<size_t>(S) * S);
    fin.download(map.data(), fin.bytes());
    std::ofstream f(o.out, std::ios::binary);
    f.write(reinterpret_cast<const char*>(map.data()), static_cast<std::streamsize>(map.size() * sizeof(float)));
    std::printf("anomaly map (%dx%d float32) written to %s\n", S, S, o.out.c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Options o = parse_args(argc, argv);
    if (!o.analytic) host_io::refuse_other_method(o.bundle);  // a DiffusionAD or GLAD bundle: refused, clearly
    if (!o.analytic && o.backend == "openvino") {
      BundleHostOptions b;
      b.bundle = o.bundle, b.images = o.images, b.precision = o.precision, b.threads = o.threads, b.repeat = o.repeat;
      b.streams = o.streams;
      b.device = o.device_text;
      if (!o.out.empty()) b.out = o.out;
      return run_bundle_openvino(b);
    }
    return o.analytic ? run_analytic(o) : run_bundle(o);
  } catch (const drdc::Error& e) {
    std::fprintf(stderr, "drdc_host: %s\n", e.what());
    return e.status() == drdc::Status::kCudaError ? 3 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "drdc_host: %s\n", e.what());
    return 1;
  }
}
