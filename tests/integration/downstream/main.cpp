// unet_eps UNET_ONNX N S IN_RAW OUT_RAW T: ε̂ of the U-Net for N rows of x (N×6×S×S float32,
// raw) at timestep T, through drdc::openvino::OpenVINORunner; writes N×3×S×S float32 raw.
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "drdc/drdc.h"

int main(int argc, char** argv) {
  if (argc != 7) {
    std::fprintf(stderr, "usage: unet_eps UNET_ONNX N S IN_RAW OUT_RAW T\n");
    return 2;
  }
  const int n = std::stoi(argv[2]), s = std::stoi(argv[3]);
  std::vector<float> x(static_cast<size_t>(n) * 6 * s * s), eps(static_cast<size_t>(n) * 3 * s * s);
  std::vector<float> t(static_cast<size_t>(n), std::stof(argv[6]));
  std::ifstream(argv[4], std::ios::binary).read(reinterpret_cast<char*>(x.data()), x.size() * sizeof(float));
  try {
    using namespace drdc::openvino;
    auto net = std::make_shared<Network>(argv[1], std::vector<TensorSpec>{{"x", {-1, 6, s, s}}, {"timesteps", {-1}}},
                                         TensorSpec{"eps", {-1, 3, s, s}});
    OpenVINORunner runner(net);
    runner.run(x.data(), t.data(), eps.data(), n, s, s, nullptr);
  } catch (const drdc::Error& e) {
    std::fprintf(stderr, "unet_eps: %s\n", e.what());
    return 1;
  }
  std::ofstream(argv[5], std::ios::binary).write(reinterpret_cast<const char*>(eps.data()), eps.size() * sizeof(float));
  std::printf("drdc %s with OpenVINO %s: %d rows\n", drdc::version(), drdc::openvino::version().c_str(), n);
  return 0;
}
