#pragma once

// A minimal JSON object writer for tallyctl's --output json.

#include <cstdint>
#include <string>
#include <string_view>

namespace tally::ctl {

// Escapes `s` as a JSON string literal, quotes included. Bytes that are not
// valid UTF-8 are written as \u00XX so the output always parses.
std::string JsonString(std::string_view s);

// Builds one flat JSON object: {"k": v, ...}.
class JsonObject {
 public:
  JsonObject& Add(std::string_view key, std::string_view value);
  JsonObject& Add(std::string_view key, const char* value) {
    return Add(key, std::string_view(value));
  }
  JsonObject& Add(std::string_view key, uint64_t value);
  JsonObject& Add(std::string_view key, bool value);
  // `raw` must already be valid JSON (an array or object).
  JsonObject& AddRaw(std::string_view key, std::string_view raw);
  std::string str() const { return out_ + "}"; }

 private:
  void Key(std::string_view key);
  std::string out_ = "{";
};

}  // namespace tally::ctl
