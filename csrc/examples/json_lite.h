// A small JSON reader for the example host's manifest.json (objects, arrays,
// strings, numbers, true/false/null; RFC 8259 syntax). Enough for a manifest; a
// production host would use its own JSON library. Every malformed input, a
// nesting deeper than kMaxDepth and a number outside the double range throw
// std::runtime_error naming the offset (csrc/tests/fuzz_json_lite.cpp feeds it
// mutated manifests under the sanitizers).
#pragma once

#include <cmath>
#include <cstdlib>
#include <limits>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace json_lite {

constexpr int kMaxDepth = 256;  // a manifest nests 4 deep; the limit keeps the recursion off the stack's end

struct Value {
  enum Type { kNull, kBool, kNumber, kString, kArray, kObject } type = kNull;
  bool boolean = false;
  double number = 0.0;
  std::string string;
  std::vector<Value> array;
  std::map<std::string, Value> object;

  bool has(const std::string& key) const { return type == kObject && object.count(key) > 0; }
  const Value& operator[](const std::string& key) const {
    auto it = object.find(key);
    if (type != kObject || it == object.end()) throw std::runtime_error("manifest: missing key '" + key + "'");
    return it->second;
  }
  // Nested lookup with a default: get({"config", "image_size"}, 224).
  double get(std::initializer_list<const char*> path, double fallback) const {
    const Value* v = this;
    for (const char* k : path) {
      if (!v->has(k)) return fallback;
      v = &(*v)[k];
    }
    return v->type == kNumber ? v->number : (v->type == kBool ? (v->boolean ? 1.0 : 0.0) : fallback);
  }
  std::vector<int> ints(std::initializer_list<const char*> path, std::vector<int> fallback) const {
    const Value* v = this;
    for (const char* k : path) {
      if (!v->has(k)) return fallback;
      v = &(*v)[k];
    }
    if (v->type != kArray) return fallback;
    std::vector<int> out;
    for (const auto& e : v->array) out.push_back(to_int(e, path));
    return out;
  }
  // An integer setting with a default: integer({"config", "image_size"}, 224). Throws unless
  // the value is a whole number within int's range.
  int integer(std::initializer_list<const char*> path, int fallback) const {
    const Value* v = this;
    for (const char* k : path) {
      if (!v->has(k)) return fallback;
      v = &(*v)[k];
    }
    return to_int(*v, path);
  }

 private:
  static int to_int(const Value& e, std::initializer_list<const char*> path) {
    if (e.type != kNumber || e.number != std::floor(e.number) ||
        e.number < static_cast<double>(std::numeric_limits<int>::min()) ||
        e.number > static_cast<double>(std::numeric_limits<int>::max())) {
      std::string where;
      for (const char* k : path) where += std::string(where.empty() ? "" : ".") + k;
      throw std::runtime_error("manifest: " + where + " must hold integers within int range");
    }
    return static_cast<int>(e.number);
  }
};

class Parser {
 public:
  explicit Parser(const std::string& text) : s_(text) {}
  Value parse() {
    Value v = value();
    skip();
    if (i_ != s_.size()) error("trailing characters");
    return v;
  }

 private:
  [[noreturn]] void error(const std::string& what) {
    throw std::runtime_error("manifest.json: " + what + " at offset " + std::to_string(i_));
  }
  void skip() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\r' || s_[i_] == '\t')) ++i_;
  }
  bool eat(char c) {
    skip();
    if (i_ < s_.size() && s_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }
  Value value(int depth = 0) {
    skip();
    if (i_ >= s_.size()) error("unexpected end");
    const char c = s_[i_];
    Value v;
    if ((c == '{' || c == '[') && depth >= kMaxDepth) error("nesting deeper than " + std::to_string(kMaxDepth));
    if (c == '{') {
      ++i_;
      v.type = Value::kObject;
      if (eat('}')) return v;
      do {
        skip();
        std::string key = str();
        if (!eat(':')) error("expected ':'");
        v.object[key] = value(depth + 1);
      } while (eat(','));
      if (!eat('}')) error("expected '}'");
    } else if (c == '[') {
      ++i_;
      v.type = Value::kArray;
      if (eat(']')) return v;
      do v.array.push_back(value(depth + 1));
      while (eat(','));
      if (!eat(']')) error("expected ']'");
    } else if (c == '"') {
      v.type = Value::kString;
      v.string = str();
    } else if (s_.compare(i_, 4, "true") == 0) {
      v.type = Value::kBool, v.boolean = true, i_ += 4;
    } else if (s_.compare(i_, 5, "false") == 0) {
      v.type = Value::kBool, i_ += 5;
    } else if (s_.compare(i_, 4, "null") == 0) {
      i_ += 4;
    } else {
      v.type = Value::kNumber;
      v.number = number();
    }
    return v;
  }
  bool digit() const { return i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9'; }
  // -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?, converted by strtod from a copy (strtod
  // alone would also take "inf", "nan", hex and leading '+').
  double number() {
    const size_t start = i_;
    if (i_ < s_.size() && s_[i_] == '-') ++i_;
    if (!digit()) error("unexpected character");
    if (s_[i_] == '0') {
      ++i_;
    } else {
      while (digit()) ++i_;
    }
    if (i_ < s_.size() && s_[i_] == '.') {
      ++i_;
      if (!digit()) error("expected a digit after '.'");
      while (digit()) ++i_;
    }
    if (i_ < s_.size() && (s_[i_] == 'e' || s_[i_] == 'E')) {
      ++i_;
      if (i_ < s_.size() && (s_[i_] == '+' || s_[i_] == '-')) ++i_;
      if (!digit()) error("expected a digit in the exponent");
      while (digit()) ++i_;
    }
    const std::string text = s_.substr(start, i_ - start);
    const double x = std::strtod(text.c_str(), nullptr);
    if (!std::isfinite(x)) error("number " + text.substr(0, 32) + " out of range");
    return x;
  }
  int hex4() {
    if (s_.size() - i_ < 4) error("bad \\u escape");
    int cp = 0;
    for (int k = 0; k < 4; ++k) {
      const char h = s_[i_++];
      const int d = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10 : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
      if (d < 0) error("bad \\u escape");
      cp = cp * 16 + d;
    }
    return cp;
  }
  static void utf8(std::string& out, long cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }
  std::string str() {
    if (i_ >= s_.size() || s_[i_] != '"') error("expected a string");
    ++i_;
    std::string out;
    while (i_ < s_.size() && s_[i_] != '"') {
      char c = s_[i_++];
      if (static_cast<unsigned char>(c) < 0x20) error("control character in a string");
      if (c == '\\') {
        if (i_ >= s_.size()) break;
        const char e = s_[i_++];
        switch (e) {
          case '"': case '\\': case '/': c = e; break;
          case 'n': c = '\n'; break;
          case 't': c = '\t'; break;
          case 'r': c = '\r'; break;
          case 'b': c = '\b'; break;
          case 'f': c = '\f'; break;
          case 'u': {
            long cp = hex4();
            if (cp >= 0xD800 && cp <= 0xDBFF) {  // a surrogate pair
              if (s_.compare(i_, 2, "\\u") != 0) error("unpaired surrogate in \\u escape");
              i_ += 2;
              const int lo = hex4();
              if (lo < 0xDC00 || lo > 0xDFFF) error("unpaired surrogate in \\u escape");
              cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
              error("unpaired surrogate in \\u escape");
            }
            utf8(out, cp);
            continue;
          }
          default: error(std::string("bad escape \\") + e);
        }
      }
      out += c;
    }
    if (i_ >= s_.size()) error("unterminated string");
    ++i_;
    return out;
  }
  const std::string& s_;
  size_t i_ = 0;
};

inline Value parse(const std::string& text) { return Parser(text).parse(); }

}  // namespace json_lite
