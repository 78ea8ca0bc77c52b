// The example host runs DRDC bundles only: a bundle whose manifest.json names another
// method ("method": "diffusionad" / "glad") is refused with a message naming the
// manifest, its "method" and the methods the host runs (csrc/examples/host_io.h);
// a manifest without "method" is a DRDC bundle written before the field existed.
//
//   test_host_method [PATH_TO_drdc_host]
//
// With the host's path (ctest passes it when the example is built), the built host is
// also run on temporary bundle folders: a "glad" one must exit non-zero with the message
// whichever backend is asked for, a manifest without "method" must not be refused for
// its method.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "drdc/status.h"
#include "host_io.h"
#include "json_lite.h"
#include "test_util.h"

namespace {

namespace fs = std::filesystem;
using drdc::Error;
using drdc::Status;

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// The message require_host_method throws for this manifest, or "" when it accepts it.
std::string refusal(const std::string& manifest_text, const std::string& path = "b/manifest.json") {
  try {
    host_io::require_host_method(json_lite::parse(manifest_text), path);
  } catch (const Error& e) {
    if (e.status() != Status::kInvalidArgument) return std::string("wrong status: ") + e.what();
    return e.what();
  }
  return "";
}

void test_accepts_drdc() {
  CHECK(host_io::require_host_method(json_lite::parse(R"({"format": "drdc_trt.bundle"})"), "m") == "drdc");
  CHECK(host_io::require_host_method(json_lite::parse(R"({"method": "drdc"})"), "m") == "drdc");
  // config.method is the training config's copy; the bundle's method is the top-level field
  CHECK(refusal(R"({"config": {"method": "glad"}})").empty());
  CHECK(host_io::host_methods() == std::vector<std::string>{"drdc"});
}

void test_refuses_other_methods() {
  for (const char* method : {"glad", "diffusionad", "patchcore"}) {
    const std::string msg = refusal(std::string(R"({"format": "drdc_trt.bundle", "method": ")") + method + "\"}",
                                    "bundles/x/manifest.json");
    CHECK(contains(msg, "bundles/x/manifest.json"));
    CHECK(contains(msg, std::string("\"method\" is \"") + method + "\""));
    CHECK(contains(msg, "this host runs \"drdc\" bundles only"));
  }
  const std::string msg = refusal(R"({"method": 3})");
  CHECK(contains(msg, "b/manifest.json: \"method\" must be a string"));
  CHECK(contains(msg, "\"drdc\""));
  CHECK(contains(refusal(R"({"method": null})"), "must be a string"));
  CHECK(contains(refusal(R"({"method": ""})"), "\"method\" is \"\""));
}

void test_unreadable_manifest_left_to_the_loader() {
  const fs::path dir = fs::temp_directory_path() / ("drdc_host_method_unit_" + std::to_string(getpid()));
  fs::remove_all(dir);
  host_io::refuse_other_method(dir.string());  // no folder: the loader says so
  fs::create_directories(dir);
  host_io::refuse_other_method(dir.string());  // no manifest.json
  std::ofstream(dir / "manifest.json") << "{not json";
  host_io::refuse_other_method(dir.string());  // not JSON
  std::ofstream(dir / "manifest.json") << R"({"method": "glad"})";
  CHECK_THROWS_STATUS(host_io::refuse_other_method(dir.string()), Status::kInvalidArgument);
  fs::remove_all(dir);
}

struct Run {
  int exit_code;  // -1: no normal exit (a signal is a crash)
  std::string err;
};

Run run_host(const std::string& host, const std::string& args, const fs::path& err_file) {
  const std::string cmd = "'" + host + "' " + args + " >/dev/null 2>'" + err_file.string() + "'";
  const int status = std::system(cmd.c_str());
  std::ifstream f(err_file);
  std::string err((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  return {status != -1 && WIFEXITED(status) ? WEXITSTATUS(status) : -1, err};
}

void test_host_program(const std::string& host) {
  const fs::path root = fs::temp_directory_path() / ("drdc_host_method_" + std::to_string(getpid()));
  fs::remove_all(root);
  const fs::path glad = root / "glad_bundle", old = root / "drdc_bundle", err = root / "stderr.txt";
  fs::create_directories(glad);
  fs::create_directories(old);
  std::ofstream(glad / "manifest.json")
      << R"({"format": "drdc_trt.bundle", "schema_version": 1, "method": "glad", "files": {}})";
  std::ofstream(old / "manifest.json") << R"({"format": "drdc_trt.bundle", "schema_version": 1, "files": {}})";
  const std::string want = (glad / "manifest.json").string() + ": \"method\" is \"glad\"; this host runs \"drdc\" bundles only";
  const std::string g = "'" + glad.string() + "'";
  for (const std::string& args : {"--bundle " + g + " --backend openvino image.bmp", g, "--backend tensorrt " + g}) {
    const Run r = run_host(host, args, err);
    if (!(r.exit_code > 0)) drdc_test::fail(__FILE__, __LINE__, "drdc_host " + args + ": exit " + std::to_string(r.exit_code));
    if (r.err.rfind("drdc_host: ", 0) != 0 || !contains(r.err, want))
      drdc_test::fail(__FILE__, __LINE__, "drdc_host " + args + ": stderr is\n" + r.err + "expected it to hold\n" + want);
    std::printf("drdc_host %s -> exit %d: %s", args.c_str(), r.exit_code, r.err.c_str());
  }
  // No "method": a DRDC bundle; it fails later (no networks here), but never for its method.
  const Run r = run_host(host, "--bundle '" + old.string() + "' --backend openvino image.bmp", err);
  CHECK(r.exit_code > 0);
  if (contains(r.err, "\"method\"")) drdc_test::fail(__FILE__, __LINE__, "a manifest without method was refused: " + r.err);
  fs::remove_all(root);
}

}  // namespace

int main(int argc, char** argv) {
  drdc_test::run_case("manifest without method / method drdc: accepted", test_accepts_drdc);
  drdc_test::run_case("method glad / diffusionad / other / not a string: refused", test_refuses_other_methods);
  drdc_test::run_case("unreadable manifest left to the backend's loader", test_unreadable_manifest_left_to_the_loader);
  if (argc > 1) {
    const std::string host = argv[1];
    drdc_test::run_case("drdc_host refuses a glad bundle", [&] { test_host_program(host); });
  } else {
    std::printf("(no drdc_host path given: the program check is skipped)\n");
  }
  return drdc_test::finish();
}
