// Fuzzing of the example host's JSON reader (csrc/examples/json_lite.h): seeded
// mutations of valid manifests — bit flips, byte changes, truncation, random bytes,
// deep nesting, huge numbers, bad escapes, spliced slices — each parsed and, when it
// parses, read the way the host reads a manifest. A malformed input must end in
// std::runtime_error; any other exception fails the run, and a crash or an
// out-of-bounds read or undefined behaviour stops it under the sanitizers
// (DRDC_SANITIZE=ON, scripts/ci_sanitize.sh).
//
//   fuzz_json_lite [inputs (default 20000)] [seed (default 1)] [manifest.json ...]
//
// Extra manifest files join the built-in seeds. Prints the counts; exit 1 on a failure.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "json_lite.h"
#include "test_util.h"

namespace {

// The shape of an exported bundle's manifest.json (drdc_trt/export/bundle.py), trimmed.
const char* kManifest = R"({
  "format": "drdc_trt.bundle", "schema_version": 3, "created_utc": "2026-12-01T00:52:04Z",
  "config": {
    "image_size": 32, "method": "drdc",
    "backbone": {"name": "tf_efficientnet_lite0", "weights": "none"},
    "diffusion": {"beta_end": 0.02, "beta_start": 0.0001, "clip_x0": true, "grid_sizes": [4, 8], "margin": 0,
                  "min_snr_gamma": 5.0, "num_sets": 2, "num_steps": 3, "num_train_timesteps": 1000,
                  "objective": "aligned", "t0": 250},
    "fusion": {"diff_norm": "pixel", "heat_norm": "image_std", "lam": 1.0, "mean_filter": 3,
               "pool_factors": [1, 2], "score_window_at_224": 16, "select": "synthetic"}
  },
  "files": {"base.onnx": {"bytes": 3028279, "sha256": "c3544c0bdb2797cca769881d59cb8a4d822d88628f8148b5f39c20f898ec150e"},
            "noise_fill.npy": {"bytes": 12416, "sha256": "00c071c0015bdcc2e5d2a5a370501bcabd0e89a2e0bd7360c5d20ddd1accd02a"}},
  "fusion": {"lam": 1.0, "mean_filter": 3, "pool_factors": [1, 2], "score_window": 3},
  "fusion_stats": {"image_threshold": 1.2345e-1, "pixel_threshold": null},
  "normalization": [0.5, 0.25, -1.5e-3, 2E+2],
  "label_seed": 0, "noise_seed": 18446744073709551615, "rows_per_image": 4, "max_batch": 8,
  "timesteps": [250, 166, 83],
  "noise": {"fill": {"file": "noise_fill.npy", "shape": [4, 3, 32, 32], "dtype": "float32"}},
  "networks": {"unet": {"onnx": "unet.onnx", "inputs": [{"name": "x", "shape": [-1, 6, 32, 32], "dtype": "float32"}]}},
  "note": "tab\t, quote \", backslash \\, slash \/, unicode \u00e9 \ud83d\ude00"
})";

const char* kArray = R"([{"a": [1, -2.5e-3, 0, true, false, null, "x"]}, [], {}, [[[]]], "", 0.0])";

struct Rng {  // SplitMix64: the same sequence on every platform
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  size_t below(size_t n) { return n ? static_cast<size_t>(next() % n) : 0; }
};

const char* kTokens[] = {
    "1e999999", "-1e400", "1e-400", "123456789012345678901234567890", "-0", "0.", ".5", "01", "1e", "1e+",
    "-", "+1", "NaN", "Infinity", "-inf", "0x1p3", "\"\\u12\"", "\"\\uZZZZ\"", "\"\\ud800\"", "\"\\udc00x\"",
    "\"\\ud83d\\u0041\"", "\"\\x41\"", "\"\\", "\\u", "\"\\u00", "\"", "\x01", "\n", "\xff\xfe", "tru", "nul",
    "falsey", "{", "}", "[", "]", ":", ",", ",]", "{\"k\"}", "{\"k\":}", "[1,]", "\"k\":", "2147483648",
    "-2147483649", "1.5", "1e308", "[1e308, -1e308]"};

std::string mutate(const std::string& seed, Rng& r) {
  std::string s = seed;
  const int n = 1 + static_cast<int>(r.below(4));
  for (int k = 0; k < n; ++k) {
    const size_t at = r.below(s.size() + 1);
    switch (r.below(9)) {
      case 0:  // bit flip
        if (!s.empty()) s[r.below(s.size())] ^= static_cast<char>(1u << r.below(8));
        break;
      case 1:  // random byte
        if (!s.empty()) s[r.below(s.size())] = static_cast<char>(r.below(256));
        break;
      case 2:  // truncation
        s.resize(r.below(s.size() + 1));
        break;
      case 3: {  // random bytes inserted
        std::string junk(1 + r.below(16), '\0');
        for (char& c : junk) c = static_cast<char>(r.below(256));
        s.insert(at, junk);
        break;
      }
      case 4: {  // deep nesting (past the reader's limit half of the time)
        const size_t depth = r.below(2) ? r.below(json_lite::kMaxDepth) : json_lite::kMaxDepth + r.below(100000);
        const bool obj = r.below(2);
        std::string open, close;
        for (size_t d = 0; d < depth; ++d) open += obj ? "{\"k\":" : "[";
        if (r.below(2)) {
          for (size_t d = 0; d < depth; ++d) close += obj ? "}" : "]";
        }
        s.insert(at, open + "0" + close);
        break;
      }
      case 5:  // a hostile token
        s.insert(at, kTokens[r.below(sizeof(kTokens) / sizeof(kTokens[0]))]);
        break;
      case 6: {  // a slice deleted
        const size_t len = r.below(64);
        if (at < s.size()) s.erase(at, len);
        break;
      }
      case 7: {  // a slice of the input copied elsewhere
        if (s.empty()) break;
        const size_t from = r.below(s.size()), len = r.below(std::min<size_t>(256, s.size() - from) + 1);
        s.insert(at, s.substr(from, len));
        break;
      }
      default: {  // a number replaced by a huge or odd one
        const size_t p = s.find_first_of("0123456789", at);
        if (p != std::string::npos) s.replace(p, 1, kTokens[r.below(6)]);
      }
    }
  }
  return s;
}

// Read a parsed manifest the way drdc_host does, and walk the whole tree.
size_t walk(const json_lite::Value& v) {
  size_t n = 1;
  for (const auto& e : v.array) n += walk(e);
  for (const auto& kv : v.object) n += walk(kv.second);
  return n;
}

void read_like_the_host(const json_lite::Value& m) {
  (void)m.get({"config", "image_size"}, 224);
  (void)m.get({"config", "diffusion", "clip_x0"}, 1);
  (void)m.ints({"config", "diffusion", "grid_sizes"}, {8, 16});
  (void)m.ints({"fusion", "pool_factors"}, {1, 2});
  (void)m.integer({"config", "diffusion", "num_sets"}, 2);
  (void)m.integer({"rows_per_image"}, 1);
  if (m.has("normalization") && m["normalization"].type == json_lite::Value::kArray)
    for (const auto& e : m["normalization"].array) (void)e.number;
  if (m.has("files") && m["files"].type == json_lite::Value::kObject)
    for (const auto& kv : m["files"].object) (void)kv.second.has("sha256");
  (void)walk(m);
}

std::string read_file(const char* path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error(std::string("cannot read ") + path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void known_answers() {
  const json_lite::Value m = json_lite::parse(kManifest);
  CHECK_EQ(m.integer({"config", "image_size"}, 0), 32);
  CHECK(m.ints({"config", "diffusion", "grid_sizes"}, {}) == std::vector<int>({4, 8}));
  CHECK_EQ(m.get({"config", "diffusion", "beta_start"}, 0), 0.0001);
  CHECK_EQ(m.get({"normalization"}, -7), -7.0);  // not a number: the fallback
  CHECK_EQ(m["normalization"].array[2].number, -1.5e-3);
  CHECK_EQ(m["normalization"].array[3].number, 200.0);
  CHECK_EQ(m["fusion_stats"]["pixel_threshold"].type, json_lite::Value::kNull);
  CHECK(m["note"].string == "tab\t, quote \", backslash \\, slash /, unicode \xc3\xa9 \xf0\x9f\x98\x80");
  CHECK_EQ(m.get({"config", "diffusion", "clip_x0"}, 0), 1.0);
  const auto rejects = [](const std::string& text, const char* what) {
    try {
      json_lite::parse(text);
    } catch (const std::runtime_error& e) {
      if (std::string(e.what()).find(what) == std::string::npos)
        drdc_test::fail(__FILE__, __LINE__, text.substr(0, 40) + ": message '" + e.what() + "' lacks '" + what + "'");
      return;
    }
    drdc_test::fail(__FILE__, __LINE__, text.substr(0, 40) + ": parsed, expected an error");
  };
  rejects(std::string(100000, '['), "nesting deeper than 256");
  rejects("[1e999]", "out of range");
  rejects("[-1e400]", "out of range");
  rejects("[NaN]", "unexpected character");
  rejects("[01]", "expected ']'");  // a number ends after a leading 0
  rejects("[1.]", "digit after '.'");
  rejects("[\"\\x\"]", "bad escape");
  rejects("[\"\\u12\"]", "bad \\u escape");
  rejects("[\"\\ud800\"]", "unpaired surrogate");
  rejects("[\"a\nb\"]", "control character");
  rejects("[\"abc", "unterminated string");
  rejects("{\"a\" 1}", "expected ':'");
  rejects("[1] x", "trailing characters");
  rejects("", "unexpected end");
  // Deep but allowed: 256 levels parse.
  const json_lite::Value deep = json_lite::parse(std::string(256, '[') + std::string(256, ']'));
  CHECK_EQ(walk(deep), static_cast<size_t>(256));
  // Numbers an int cannot hold are refused by the integer readers, not cast.
  const json_lite::Value big = json_lite::parse(R"({"a": [2147483648], "b": 1.5, "c": "7", "d": -2147483648})");
  for (const char* key : {"a", "b", "c"}) {
    bool threw = false;
    try {
      if (std::string(key) == "a") (void)big.ints({key}, {});
      else (void)big.integer({key}, 0);
    } catch (const std::runtime_error&) {
      threw = true;
    }
    CHECK(threw);
  }
  CHECK_EQ(big.integer({"d"}, 0), -2147483647 - 1);
}

}  // namespace

int main(int argc, char** argv) {
  const long count = argc > 1 ? std::strtol(argv[1], nullptr, 10) : 20000;
  Rng rng{argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 1};
  std::vector<std::string> seeds{kManifest, kArray};
  for (int a = 3; a < argc; ++a) seeds.push_back(read_file(argv[a]));

  drdc_test::run_case("known answers and clean errors", known_answers);
  long parsed = 0, refused = 0;
  drdc_test::run_case("mutated inputs", [&] {
    for (const auto& s : seeds) read_like_the_host(json_lite::parse(s));  // the seeds are valid
    for (long i = 0; i < count; ++i) {
      const std::string input = mutate(seeds[rng.below(seeds.size())], rng);
      try {
        read_like_the_host(json_lite::parse(input));
        ++parsed;
      } catch (const std::runtime_error&) {
        ++refused;  // a clean error: what a malformed manifest must give
      } catch (const std::exception& e) {
        drdc_test::fail(__FILE__, __LINE__, "input " + std::to_string(i) + ": " + e.what() + " (not a parse error)");
        return;
      }
    }
  });
  std::printf("fuzz_json_lite: %ld mutated inputs from %zu seeds: %ld parsed, %ld refused with a parse error\n",
              parsed + refused, seeds.size(), parsed, refused);
  if (parsed + refused != count) drdc_test::fail(__FILE__, __LINE__, "not every input was tried");
  return drdc_test::finish();
}
