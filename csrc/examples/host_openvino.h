// Bundle mode of the example host on OpenVINO (CPU by default, no GPU needed).
#pragma once

#include <string>
#include <vector>

struct BundleHostOptions {
  std::string bundle, out = "drdc_host_out";
  std::vector<std::string> images;
  std::string device = "CPU", precision = "f32";
  int threads = 0;
  int streams = -1;  // U-Net calls of two rows or more split over OpenVINO CPU streams (-1: OpenVINO's count; 0: off)
  int repeat = 1;  // passes over the images; with more than one, the first is a warm-up and is not timed
};

// Scores the images with the bundle: writes OUT/results.json, results.csv and
// OUT/maps/NNNN_<stem>_anomaly_map.npy (the fields and names of `drdc detect`),
// prints one line per image and the per-image latency. Throws drdc::Error.
int run_bundle_openvino(const BundleHostOptions& options);
