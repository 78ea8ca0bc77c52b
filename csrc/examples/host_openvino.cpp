// Bundle mode on OpenVINO: what drdc_trt.runtime.BundleDetector computes, in
// C++ only. The manifest is checked as drdc_trt.export.bundle.load_bundle
// checks it (format, schema version, every listed file's size and SHA-256),
// the networks' names and shapes against the manifest (drdc::openvino), then
// per image: base network → C++ refiner with the OpenVINO U-Net and the
// bundle's loop noise → per-pixel statistics → fusion, all on the CPU.
#include "host_openvino.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "drdc/drdc.h"
#include "host_io.h"
#include "json_lite.h"

namespace {

using drdc::Error;
using drdc::Status;
namespace fs = std::filesystem;

[[noreturn]] void bad_bundle(const std::string& bundle, const std::string& what) {
  throw Error(Status::kInvalidArgument, "bundle " + bundle + ": " + what);
}

json_lite::Value load_manifest(const std::string& bundle) {
  const std::string path = bundle + "/manifest.json";
  std::ifstream f(path);
  if (!fs::is_directory(bundle)) throw Error(Status::kIoError, "bundle " + bundle + ": no such folder");
  if (!f) throw Error(Status::kIoError, "bundle " + bundle + ": missing manifest.json (not a bundle; write one with "
                                        "`drdc export`)");
  const std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  json_lite::Value m;
  try {
    m = json_lite::parse(text);
  } catch (const std::exception& e) {
    bad_bundle(bundle, std::string("manifest.json is not valid JSON (") + e.what() + ")");
  }
  if (!m.has("format") || m["format"].string != "drdc_trt.bundle")
    bad_bundle(bundle, "manifest.json is not a drdc_trt bundle manifest (format != 'drdc_trt.bundle')");
  host_io::require_host_method(m, path);  // DRDC only (drdc_host checks it before any backend, too)
  if (m.get({"schema_version"}, -1) != 1)
    bad_bundle(bundle, "manifest.json has schema_version " + std::to_string(m.integer({"schema_version"}, -1)) +
                           ", this host reads schema_version 1; re-export the bundle with `drdc export`");
  if (!m.has("files") || m["files"].type != json_lite::Value::kObject)
    bad_bundle(bundle, "manifest.json: files must map file names to their sha256 and bytes");
  for (const auto& [name, meta] : m["files"].object) {
    const std::string p = bundle + "/" + name;
    if (name.find('/') != std::string::npos || name.find("..") != std::string::npos)
      bad_bundle(bundle, "manifest.json: file name '" + name + "' is not a plain file name");
    if (!fs::is_regular_file(p)) bad_bundle(bundle, "missing file '" + name + "' (listed in manifest.json)");
    if (!meta.has("sha256") || !meta.has("bytes")) bad_bundle(bundle, "manifest.json: files." + name + " needs sha256 and bytes");
    uint64_t bytes = 0;
    const std::string digest = host_io::sha256_file(p, &bytes);
    if (static_cast<double>(bytes) != meta["bytes"].number)
      bad_bundle(bundle, "file '" + name + "' has " + std::to_string(bytes) + " bytes, manifest.json says " +
                             std::to_string(static_cast<long long>(meta["bytes"].number)) +
                             ": it changed after export; re-export the bundle");
    if (digest != meta["sha256"].string)
      bad_bundle(bundle, "file '" + name + "' has SHA-256 " + digest.substr(0, 16) + "..., manifest.json says " +
                             meta["sha256"].string.substr(0, 16) + "...: it changed after export; re-export the bundle");
  }
  return m;
}

// A manifest file name that the manifest also lists (so its hash was checked above).
std::string listed_file(const json_lite::Value& m, const std::string& bundle, const json_lite::Value& v,
                        const std::string& field) {
  if (v.type != json_lite::Value::kString || !m["files"].has(v.string))
    bad_bundle(bundle, "manifest.json: " + field + " names '" + v.string + "', which is not among its files");
  return bundle + "/" + v.string;
}

std::vector<drdc::openvino::TensorSpec> specs(const json_lite::Value& m, const std::string& bundle, const char* net,
                                              const char* role) {
  const std::string field = std::string("networks.") + net + "." + role;
  if (!m.has("networks") || !m["networks"].has(net) || !m["networks"][net].has(role) ||
      m["networks"][net][role].type != json_lite::Value::kArray)
    bad_bundle(bundle, "manifest.json: " + field + " is missing");
  std::vector<drdc::openvino::TensorSpec> out;
  for (const auto& d : m["networks"][net][role].array) {
    drdc::openvino::TensorSpec s;
    if (!d.has("name") || !d.has("shape") || !d.has("dtype") || d["shape"].type != json_lite::Value::kArray)
      bad_bundle(bundle, "manifest.json: " + field + ": expected objects with name, shape and dtype");
    s.name = d["name"].string, s.dtype = d["dtype"].string;
    for (const auto& e : d["shape"].array) s.shape.push_back(e.type == json_lite::Value::kString ? -1 : static_cast<int64_t>(e.number));
    out.push_back(s);
  }
  if (out.empty()) bad_bundle(bundle, "manifest.json: " + field + " is empty");
  return out;
}

// A noise / statistics array of the manifest, its shape checked.
std::vector<float> load_array(const json_lite::Value& m, const std::string& bundle, const char* section, const char* key,
                              const std::vector<int64_t>& want) {
  if (!m.has(section) || !m[section].has(key) || !m[section][key].has("file"))
    bad_bundle(bundle, std::string("manifest.json: ") + section + "." + key + " is missing");
  const std::string path = listed_file(m, bundle, m[section][key]["file"], std::string(section) + "." + key);
  std::vector<int64_t> shape;
  std::vector<float> a = host_io::read_npy_f32(path, shape);
  if (shape != want) {
    std::string got, exp;
    for (auto d : shape) got += std::to_string(d) + " ";
    for (auto d : want) exp += std::to_string(d) + " ";
    bad_bundle(bundle, m[section][key]["file"].string + ": holds shape ( " + got + "), expected ( " + exp + ")");
  }
  return a;
}

double threshold(const json_lite::Value& m, const char* key) {
  if (!m.has("fusion_stats") || !m["fusion_stats"].has(key)) return std::numeric_limits<double>::infinity();
  const auto& v = m["fusion_stats"][key];
  return v.type == json_lite::Value::kNumber ? v.number : std::numeric_limits<double>::infinity();
}

// Per row, the lower of the two middle values (torch.median's rule).
float lower_median(std::vector<float> v) {
  const auto k = v.begin() + static_cast<std::ptrdiff_t>((v.size() - 1) / 2);
  std::nth_element(v.begin(), k, v.end());
  return *k;
}

// max(1.4826 · median|x − median(x)|, 1e-3) over the whole image (drdc_trt.config.MAD_TO_STD,
// CONTRAST_FLOOR), in float32 as the Python runtimes compute it.
float robust_std(const std::vector<float>& x) {
  const float med = lower_median(x);
  std::vector<float> dev(x.size());
  for (size_t i = 0; i < x.size(); ++i) dev[i] = std::fabs(x[i] - med);
  return std::max(1.4826f * lower_median(dev), 1e-3f);
}

std::string number_text(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "Infinity" : "-Infinity";
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", v);  // round-trips a double
  return buf;
}

}  // namespace

int run_bundle_openvino(const BundleHostOptions& o) {
  using namespace drdc;
  if (!built_with_openvino())
    throw Error(Status::kNotCompiled, "this drdc build has no OpenVINO runner; configure CMake with the openvino "
                                      "package installed (pip install openvino) or -DOpenVINO_DIR=...");
  require(!o.images.empty(), "no images given (drdc_host --bundle B --backend openvino IMAGE...)");
  require(o.repeat >= 1, "--repeat must be >= 1");
  const std::string& B = o.bundle;
  const json_lite::Value m = load_manifest(B);
  if (!m.has("config") || !m["config"].has("diffusion") || !m["config"].has("fusion"))
    bad_bundle(B, "manifest.json: config.diffusion / config.fusion are missing");
  const int S = m.integer({"config", "image_size"}, 0);
  if (S < 16) bad_bundle(B, "manifest.json: config.image_size is missing or too small");
  // The border margin and the local-contrast heat run in the Python runtimes only so far.
  const auto& fusion_cfg = m["config"]["fusion"];
  const std::string heat_norm = fusion_cfg.has("heat_norm") ? fusion_cfg["heat_norm"].string : "none";
  if (m.get({"config", "diffusion", "margin"}, 0) != 0.0)
    bad_bundle(B, "manifest.json: config.diffusion.margin is set; this host runs bundles without a border margin "
                  "(use drdc_trt.runtime)");
  if (heat_norm != "none" && heat_norm != "image_std")
    bad_bundle(B, "manifest.json: config.fusion.heat_norm is '" + heat_norm + "'; this host runs 'none' and "
                  "'image_std' (use drdc_trt.runtime)");
  const std::vector<int> grids = m.ints({"config", "diffusion", "grid_sizes"}, {});
  if (grids.empty()) bad_bundle(B, "manifest.json: config.diffusion.grid_sizes is missing");
  RefinerConfig cfg;
  cfg.device = Device::kCPU;
  cfg.batch = 1, cfg.height = cfg.width = S;
  cfg.num_sets = m.integer({"config", "diffusion", "num_sets"}, 0);
  cfg.t0 = m.integer({"config", "diffusion", "t0"}, -1);
  cfg.num_steps = m.integer({"config", "diffusion", "num_steps"}, 0);
  cfg.clip_x0 = m.get({"config", "diffusion", "clip_x0"}, 1) != 0.0;
  cfg.cuda_graph = false;
  cfg.pool_factors = m.ints({"fusion", "pool_factors"}, {});
  const Schedule schedule = Schedule::linear(m.integer({"config", "diffusion", "num_train_timesteps"}, 1000),
                                             m.get({"config", "diffusion", "beta_start"}, 1e-4),
                                             m.get({"config", "diffusion", "beta_end"}, 0.02));
  const LabelMaps labels = grid_labels(S, grids, cfg.num_sets, static_cast<uint64_t>(m.integer({"label_seed"}, 0)));
  const int rows = labels.J * cfg.num_sets;
  if (m.integer({"rows_per_image"}, 0) != rows)
    bad_bundle(B, "manifest.json: rows_per_image " + std::to_string(m.integer({"rows_per_image"}, 0)) +
                      " != grid specs x sets = " + std::to_string(rows));
  if (!m.has("normalization") || m["normalization"].array.size() != 4)
    bad_bundle(B, "manifest.json: normalization must be [mu_diff, sd_diff, mu_base, sd_base]");
  std::vector<float> stats;
  for (const auto& e : m["normalization"].array) stats.push_back(static_cast<float>(e.number));
  const double image_thr = threshold(m, "image_threshold"), pixel_thr = threshold(m, "pixel_threshold");

  // Networks, checked against the manifest's names and shapes.
  // --precision int8: the bundle's int8 OpenVINO IR of a network where it has one (`drdc export --int8`),
  // compiled with f32 for the layers NNCF kept in float; other networks run their ONNX in f32.
  const bool int8 = o.precision == "int8";
  if (int8 && !(m.has("int8") && m["int8"].has("networks")))
    bad_bundle(B, "holds no int8 networks; write them with `drdc export --int8 --calib DATA`, or choose "
                  "--precision f32 / bf16");
  openvino::Options ov;
  ov.device = o.device, ov.precision = int8 ? "f32" : o.precision, ov.threads = o.threads, ov.streams = o.streams;
  const auto network_file = [&](const std::string& net) {
    if (int8 && m["int8"]["networks"].has(net))
      return listed_file(m, B, m["int8"]["networks"][net]["xml"], "int8.networks." + net + ".xml");
    return listed_file(m, B, m["networks"][net]["onnx"], "networks." + net + ".onnx");
  };
  const auto base_in = specs(m, B, "base", "inputs"), base_out = specs(m, B, "base", "outputs");
  const auto unet_in = specs(m, B, "unet", "inputs"), unet_out = specs(m, B, "unet", "outputs");
  if (base_in[0].shape != std::vector<int64_t>{-1, 3, S, S})
    bad_bundle(B, "manifest.json: networks.base.inputs[0] is not batch x 3 x " + std::to_string(S) + " x " +
                      std::to_string(S) + " (config.image_size)");
  auto base_net = std::make_shared<openvino::Network>(network_file("base"), base_in, base_out[0], ov);
  auto unet_net = std::make_shared<openvino::Network>(network_file("unet"), unet_in, unet_out[0], ov);
  Refiner refiner(cfg, schedule, labels, std::make_shared<openvino::OpenVINORunner>(unet_net));
  const std::vector<int> want_ts = m.ints({"timesteps"}, {});
  if (want_ts != refiner.timesteps()) bad_bundle(B, "manifest.json: timesteps differ from the config's DDIM schedule");

  // The loop noise of the PyTorch Detector's seed and the per-pixel statistics.
  const int T = cfg.num_steps;
  const std::vector<float> fill = load_array(m, B, "noise", "fill", {rows, 3, S, S});
  const std::vector<float> start = load_array(m, B, "noise", "start", {rows, 3, S, S});
  const std::vector<float> steps = load_array(m, B, "noise", "steps", {T, rows, 3, S, S});
  std::vector<float> pmean, pstd;
  if (m.has("pixel_stats") && m["pixel_stats"].type == json_lite::Value::kObject) {
    pmean = load_array(m, B, "pixel_stats", "mean", {S, S});
    pstd = load_array(m, B, "pixel_stats", "std", {S, S});
  } else if (fusion_cfg.has("diff_norm") && fusion_cfg["diff_norm"].string == "pixel") {
    bad_bundle(B, "manifest.json: config has fusion.diff_norm='pixel' but pixel_stats is missing");
  }
  const LoopNoise noise{fill.data(), start.data(), steps.data()};

  // Read every image first: a bad one stops the run before any output is written.
  std::vector<std::vector<float>> images;
  for (const auto& path : o.images) images.push_back(host_io::read_image(path, S));

  const size_t plane = static_cast<size_t>(S) * S;
  std::vector<float> base(plane), heat(plane), fin(plane), hd(plane), hb(plane);
  std::vector<float> scores(images.size());
  std::vector<std::vector<float>> maps(images.size());
  std::vector<double> times_ms;
  int bh = 0, bw = 0;
  for (int pass = 0; pass < o.repeat; ++pass) {
    for (size_t i = 0; i < images.size(); ++i) {
      const auto t_start = std::chrono::steady_clock::now();
      const auto bshape = base_net->infer({images[i].data()}, {{1, 3, S, S}}, base.data(), base.size());
      if (bshape.size() != 3 || bshape[0] != 1) bad_bundle(B, "base network output is not 1 x h x w");
      bh = static_cast<int>(bshape[1]), bw = static_cast<int>(bshape[2]);
      const int count = refiner.run(images[i].data(), heat.data(), nullptr, noise, nullptr);
      if (heat_norm == "image_std") {  // heat / the image's robust std (drdc_trt.runtime.kernels.heat_divisor)
        const float rs = robust_std(images[i]);
        for (float& v : heat) v /= rs;
      }
      if (!pmean.empty()) {  // per-pixel z-scores of the mean heat (drdc_trt.fusion.PixelStats.apply)
        const float c = static_cast<float>(count);
        for (size_t p = 0; p < plane; ++p) heat[p] = (heat[p] / c - pmean[p]) / pstd[p] * c;
      }
      float score = 0.f;
      FuseArgs fa;
      fa.heat = heat.data(), fa.base = base.data(), fa.final_map = fin.data();
      fa.diff_map = hd.data(), fa.base_up = hb.data(), fa.score = &score;
      fa.B = 1, fa.H = fa.W = S, fa.h = bh, fa.w = bw, fa.inv_count = 1.f / static_cast<float>(count);
      fa.mean_filter = m.integer({"fusion", "mean_filter"}, 0);
      fa.lam = m.get({"fusion", "lam"}, -1);
      fa.mu_d = stats[0], fa.sd_d = stats[1], fa.mu_b = stats[2], fa.sd_b = stats[3];
      fa.score_window = m.integer({"fusion", "score_window"}, 0);
      fuse(Device::kCPU, fa, nullptr);
      const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t_start).count();
      if (o.repeat == 1 || pass > 0) times_ms.push_back(ms);
      scores[i] = score;
      maps[i] = fin;
    }
  }

  // Output: the layout and fields of `drdc detect` (results.json, results.csv, maps/*.npy).
  fs::create_directories(fs::path(o.out) / "maps");
  std::string json = "{\n  \"image_threshold\": " + number_text(image_thr) + ",\n  \"results\": [";
  std::string csv = "image,pred_score,pred_label,anomaly_map\n";
  for (size_t i = 0; i < images.size(); ++i) {
    char idx[16];
    std::snprintf(idx, sizeof idx, "%04zu", i);
    const std::string map_rel = "maps/" + std::string(idx) + "_" + fs::path(o.images[i]).stem().string() + "_anomaly_map.npy";
    host_io::write_npy_f32((fs::path(o.out) / map_rel).string(), maps[i].data(), {S, S});
    const bool anomalous = !(scores[i] <= image_thr);  // NaN counts as anomalous, as in Python
    int mask_pixels = 0;
    for (float v : maps[i]) mask_pixels += !(v <= pixel_thr);
    json += std::string(i ? "," : "") + "\n    {\"image\": \"" + host_io::json_escape(o.images[i]) +
            "\", \"pred_score\": " + number_text(scores[i]) + ", \"pred_label\": " + (anomalous ? "1" : "0") +
            ", \"anomaly_map\": \"" + map_rel + "\", \"pred_mask_pixels\": " + std::to_string(mask_pixels) + "}";
    csv += "\"" + o.images[i] + "\"," + number_text(scores[i]) + "," + (anomalous ? "1" : "0") + "," + map_rel + "\n";
    std::printf("%s: pred_score %.3f %s\n", o.images[i].c_str(), scores[i], anomalous ? "ANOMALOUS" : "normal");
  }
  json += "\n  ]\n}\n";
  for (const auto& [name, text] : {std::make_pair(std::string("results.json"), json), std::make_pair(std::string("results.csv"), csv)}) {
    const fs::path dst = fs::path(o.out) / name, tmp = fs::path(o.out) / (name + ".tmp");
    std::ofstream(tmp) << text;
    fs::rename(tmp, dst);
  }
  std::vector<double> sorted = times_ms;
  std::sort(sorted.begin(), sorted.end());
  std::printf("OpenVINO %s, device %s, precision %s, %d stream(s): %zu image(s) of %dx%d, %d U-Net calls of %d rows "
              "each\n", openvino::version().c_str(), unet_net->device().c_str(),
              int8 ? "int8" : unet_net->precision().c_str(), unet_net->streams(), images.size(), S, S,
              cfg.num_steps, refiner.rows());
  std::printf("latency per image: median %.3f ms, min %.3f ms over %zu timed call(s)\n", sorted[sorted.size() / 2],
              sorted.front(), sorted.size());
  std::printf("wrote %zu results to %s/results.json, results.csv and maps\n", images.size(), o.out.c_str());
  return 0;
}
