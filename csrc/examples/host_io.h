// File helpers of the example host: SHA-256 (the bundle manifest's file
// hashes), float32 .npy read/write, images (uncompressed 24/32-bit BMP, or a
// 3×S×S float32 .npy in [-1, 1]), and the bundle's method (which bundles the
// host runs). Every failure throws drdc::Error naming the file.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "drdc/status.h"
#include "json_lite.h"

namespace host_io {

// ------------------------------------------------------------------ SHA-256 (FIPS 180-4)
class Sha256 {
 public:
  void update(const unsigned char* p, std::size_t n) {
    total_ += n;
    while (n > 0) {
      const std::size_t take = std::min<std::size_t>(64 - fill_, n);
      std::memcpy(block_ + fill_, p, take);
      fill_ += take, p += take, n -= take;
      if (fill_ == 64) compress(), fill_ = 0;
    }
  }
  std::string hex() {
    const uint64_t bits = total_ * 8;
    const unsigned char one = 0x80, zero = 0;
    update(&one, 1);
    while (fill_ != 56) update(&zero, 1);
    unsigned char len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(bits >> (56 - 8 * i));
    update(len, 8);
    std::string out;
    char buf[9];
    for (uint32_t v : h_) std::snprintf(buf, sizeof buf, "%08x", v), out += buf;
    return out;
  }

 private:
  static uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }
  void compress() {
    static const uint32_t k[64] = {
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};
    uint32_t w[64];
    for (int i = 0; i < 16; ++i)
      w[i] = (uint32_t(block_[4 * i]) << 24) | (uint32_t(block_[4 * i + 1]) << 16) |
             (uint32_t(block_[4 * i + 2]) << 8) | uint32_t(block_[4 * i + 3]);
    for (int i = 16; i < 64; ++i) {
      const uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
      const uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h_[0], b = h_[1], c = h_[2], d = h_[3], e = h_[4], f = h_[5], g = h_[6], h = h_[7];
    for (int i = 0; i < 64; ++i) {
      const uint32_t t1 = h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + k[i] + w[i];
      const uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
      h = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
    }
    h_[0] += a, h_[1] += b, h_[2] += c, h_[3] += d, h_[4] += e, h_[5] += f, h_[6] += g, h_[7] += h;
  }
  std::array<uint32_t, 8> h_{0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                             0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  unsigned char block_[64] = {};
  std::size_t fill_ = 0;
  uint64_t total_ = 0;
};

inline std::string sha256_file(const std::string& path, uint64_t* bytes = nullptr) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw drdc::Error(drdc::Status::kIoError, "cannot open " + path);
  Sha256 h;
  std::vector<char> buf(1 << 16);
  uint64_t n = 0;
  while (f) {
    f.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    const std::size_t got = static_cast<std::size_t>(f.gcount());
    h.update(reinterpret_cast<const unsigned char*>(buf.data()), got);
    n += got;
  }
  if (bytes) *bytes = n;
  return h.hex();
}

// ------------------------------------------------------------------ .npy
// A little-endian float32, C-order .npy file; shape out.
inline std::vector<float> read_npy_f32(const std::string& path, std::vector<int64_t>& shape) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw drdc::Error(drdc::Status::kIoError, "cannot open " + path);
  char magic[8];
  if (!f.read(magic, 8) || std::memcmp(magic, "\x93NUMPY", 6) != 0)
    throw drdc::Error(drdc::Status::kIoError, path + ": not a .npy file");
  uint32_t header_len = 0;
  unsigned char b[4] = {0, 0, 0, 0};
  if (!f.read(reinterpret_cast<char*>(b), magic[6] == 1 ? 2 : 4))
    throw drdc::Error(drdc::Status::kIoError, path + ": truncated .npy header");
  header_len = b[0] | (b[1] << 8) | (b[2] << 16) | (static_cast<uint32_t>(b[3]) << 24);
  if (header_len > (1u << 20)) throw drdc::Error(drdc::Status::kIoError, path + ": .npy header too long");
  std::string header(header_len, '\0');
  if (!f.read(&header[0], header_len)) throw drdc::Error(drdc::Status::kIoError, path + ": truncated .npy header");
  if (header.find("'<f4'") == std::string::npos || header.find("'fortran_order': False") == std::string::npos)
    throw drdc::Error(drdc::Status::kIoError, path + ": expected little-endian float32 in C order");
  const size_t key = header.find("'shape'");
  const size_t open = key == std::string::npos ? key : header.find('(', key);
  const size_t close = open == std::string::npos ? open : header.find(')', open);
  if (close == std::string::npos) throw drdc::Error(drdc::Status::kIoError, path + ": .npy header has no shape");
  shape.clear();
  std::stringstream dims(header.substr(open + 1, close - open - 1));
  std::string tok;
  size_t count = 1;
  while (std::getline(dims, tok, ','))
    if (tok.find_first_not_of(' ') != std::string::npos) {
      long long d = -1;
      try {
        d = std::stoll(tok);
      } catch (const std::exception&) {
      }
      if (d < 0 || d > (1LL << 31)) throw drdc::Error(drdc::Status::kIoError, path + ": bad .npy shape");
      shape.push_back(d);
      count *= static_cast<size_t>(d);
    }
  if (count > (size_t(1) << 32)) throw drdc::Error(drdc::Status::kIoError, path + ": .npy array too large");
  std::vector<float> data(count);
  if (!f.read(reinterpret_cast<char*>(data.data()), static_cast<std::streamsize>(count * sizeof(float))))
    throw drdc::Error(drdc::Status::kIoError, path + ": truncated .npy data");
  return data;
}

inline void write_npy_f32(const std::string& path, const float* data, const std::vector<int64_t>& shape) {
  std::string dims;
  size_t count = 1;
  for (int64_t d : shape) dims += std::to_string(d) + ", ", count *= static_cast<size_t>(d);
  if (shape.size() > 1) dims.erase(dims.size() - 2);  // (3,) for one dimension, (2, 3) otherwise
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
  while ((10 + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary);
    const uint16_t len = static_cast<uint16_t>(header.size());
    f.write("\x93NUMPY\x01\x00", 8);
    const char lb[2] = {static_cast<char>(len & 0xff), static_cast<char>(len >> 8)};
    f.write(lb, 2);
    f.write(header.data(), static_cast<std::streamsize>(header.size()));
    f.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(count * sizeof(float)));
    if (!f) throw drdc::Error(drdc::Status::kIoError, "cannot write " + tmp);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) throw drdc::Error(drdc::Status::kIoError, "cannot write " + path);
}

// ------------------------------------------------------------------ images
// 3×S×S float32 RGB in [-1, 1] (pixel/127.5 − 1, as drdc_trt.data.load_image): an
// uncompressed 24- or 32-bit BMP of exactly S×S pixels, or a .npy of that shape.
inline std::vector<float> read_image(const std::string& path, int size) {
  const size_t plane = static_cast<size_t>(size) * size;
  const std::string ext = path.size() >= 4 ? path.substr(path.size() - 4) : "";
  if (ext == ".npy" || ext == ".NPY") {
    std::vector<int64_t> shape;
    std::vector<float> x = read_npy_f32(path, shape);
    if (shape != std::vector<int64_t>{3, size, size})
      throw drdc::Error(drdc::Status::kInvalidArgument, path + ": expected a 3x" + std::to_string(size) + "x" +
                                                            std::to_string(size) + " float32 array (the bundle's image size)");
    for (float v : x)
      if (!(v >= -1.001f && v <= 1.001f))
        throw drdc::Error(drdc::Status::kInvalidArgument, path + ": values must lie in [-1, 1] (pixel/127.5 - 1)");
    return x;
  }
  std::ifstream f(path, std::ios::binary);
  if (!f) throw drdc::Error(drdc::Status::kIoError, "cannot open image " + path);
  std::vector<unsigned char> blob((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  auto u16 = [&](size_t o) { return static_cast<uint32_t>(blob[o] | (blob[o + 1] << 8)); };
  auto u32 = [&](size_t o) { return u16(o) | (u16(o + 2) << 16); };
  if (blob.size() < 54 || blob[0] != 'B' || blob[1] != 'M')
    throw drdc::Error(drdc::Status::kIoError, path + ": not a BMP image (the host reads uncompressed 24/32-bit BMP "
                                                     "and 3xSxS float32 .npy)");
  const uint32_t offset = u32(10), width = u32(18), bpp = u16(28), compression = u32(30);
  const int32_t height = static_cast<int32_t>(u32(22));
  if ((bpp != 24 && bpp != 32) || (compression != 0 && !(compression == 3 && bpp == 32)))
    throw drdc::Error(drdc::Status::kIoError, path + ": BMP with " + std::to_string(bpp) + " bits per pixel, compression " +
                                                  std::to_string(compression) + "; the host reads uncompressed 24/32-bit BMP");
  const uint32_t rows = static_cast<uint32_t>(height < 0 ? -static_cast<int64_t>(height) : height);
  if (width != static_cast<uint32_t>(size) || rows != static_cast<uint32_t>(size))
    throw drdc::Error(drdc::Status::kInvalidArgument, path + ": image is " + std::to_string(width) + "x" +
                                                          std::to_string(rows) + ", the bundle takes " + std::to_string(size) +
                                                          "x" + std::to_string(size) + " images (this host does not resize)");
  const size_t stride = ((static_cast<size_t>(width) * bpp / 8) + 3) & ~size_t(3);
  if (static_cast<size_t>(offset) + stride * rows > blob.size())
    throw drdc::Error(drdc::Status::kIoError, path + ": truncated BMP pixel data");
  std::vector<float> x(3 * plane);
  for (uint32_t r = 0; r < rows; ++r) {
    const uint32_t y = height < 0 ? r : rows - 1 - r;  // positive height: stored bottom-up
    const unsigned char* p = blob.data() + offset + stride * r;
    for (uint32_t c = 0; c < width; ++c, p += bpp / 8)
      for (int ch = 0; ch < 3; ++ch)  // BGR in the file
        x[ch * plane + static_cast<size_t>(y) * size + c] = static_cast<float>(p[2 - ch]) / 127.5f - 1.0f;
  }
  return x;
}

inline std::string json_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\', out += c;
    else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else out += c;
  }
  return out;
}

// ------------------------------------------------------------------ the bundle's method
// A bundle's manifest.json names its method in a top-level "method" field ("drdc",
// "diffusionad" or "glad"); a manifest without it is a DRDC bundle written before the
// field existed (drdc_trt.export.bundle.Bundle.method). This host runs DRDC only.
inline const std::vector<std::string>& host_methods() {
  static const std::vector<std::string> methods{"drdc"};
  return methods;
}

// The bundle's method when this host runs it; otherwise throws drdc::Error
// kInvalidArgument naming the manifest, its "method" and the methods the host runs.
inline std::string require_host_method(const json_lite::Value& manifest, const std::string& manifest_path) {
  std::string runs;
  for (const auto& name : host_methods()) runs += std::string(runs.empty() ? "" : ", ") + "\"" + name + "\"";
  if (!manifest.has("method")) return "drdc";  // written before the field existed: DRDC's
  const json_lite::Value& v = manifest["method"];
  if (v.type != json_lite::Value::kString)
    throw drdc::Error(drdc::Status::kInvalidArgument,
                      manifest_path + ": \"method\" must be a string naming the bundle's method; this host runs " +
                          runs + " bundles");
  for (const auto& name : host_methods())
    if (v.string == name) return name;
  throw drdc::Error(drdc::Status::kInvalidArgument,
                    manifest_path + ": \"method\" is \"" + json_escape(v.string) + "\"; this host runs " + runs +
                        " bundles only (a manifest without \"method\" is a DRDC bundle); score this bundle with "
                        "the Python runtime (drdc_trt.runtime.load_detector)");
}

// The host's first look at BUNDLE/manifest.json, before any backend: a bundle of a
// method the host does not run is refused here, whichever backend was asked for and
// whether or not this build has it. A manifest that cannot be read or parsed is left
// to the backend's loader, which reports it.
inline void refuse_other_method(const std::string& bundle) {
  const std::string path = bundle + "/manifest.json";
  std::ifstream f(path);
  if (!f) return;
  const std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  json_lite::Value m;
  try {
    m = json_lite::parse(text);
  } catch (const std::exception&) {
    return;
  }
  require_host_method(m, path);
}

}  // namespace host_io
