// A small JSON reader for the example host's manifest.json (objects, arrays,
// strings with the common escapes, numbers, true/false/null). Enough for a
// manifest; a production host would use its own JSON library.
#pragma once

#include <cstdlib>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace json_lite {

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
    for (const auto& e : v->array) out.push_back(static_cast<int>(e.number));
    return out;
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
  Value value() {
    skip();
    if (i_ >= s_.size()) error("unexpected end");
    const char c = s_[i_];
    Value v;
    if (c == '{') {
      ++i_;
      v.type = Value::kObject;
      if (eat('}')) return v;
      do {
        skip();
        std::string key = str();
        if (!eat(':')) error("expected ':'");
        v.object[key] = value();
      } while (eat(','));
      if (!eat('}')) error("expected '}'");
    } else if (c == '[') {
      ++i_;
      v.type = Value::kArray;
      if (eat(']')) return v;
      do v.array.push_back(value());
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
      char* end = nullptr;
      v.number = std::strtod(s_.c_str() + i_, &end);
      if (end == s_.c_str() + i_) error("unexpected character");
      v.type = Value::kNumber;
      i_ = static_cast<size_t>(end - s_.c_str());
    }
    return v;
  }
  std::string str() {
    if (i_ >= s_.size() || s_[i_] != '"') error("expected a string");
    ++i_;
    std::string out;
    while (i_ < s_.size() && s_[i_] != '"') {
      char c = s_[i_++];
      if (c == '\\' && i_ < s_.size()) {
        const char e = s_[i_++];
        switch (e) {
          case 'n': c = '\n'; break;
          case 't': c = '\t'; break;
          case 'r': c = '\r'; break;
          case 'b': c = '\b'; break;
          case 'f': c = '\f'; break;
          case 'u': i_ += 4; c = '?'; break;  // non-ASCII is not needed for a manifest
          default: c = e;
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
