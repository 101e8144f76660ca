// common/json_field: optional fields of a parsed JSON object, read with their type checked first, so a field of the
// wrong type becomes InputError("ORIGIN: field 'KEY' must be a number, got \"abc\"") naming the file, the field
// and the expected type. (read_document turns the library's own type errors into InputError too, but those name
// only the types, not the field.) A missing or null field gives the fallback.
#pragma once
#include <string>

#include <nlohmann/json.hpp>

#include "common/error.hpp"
#include "common/text.hpp"

namespace moeplan {

namespace json_field_detail {

inline const nlohmann::json* present(const nlohmann::json& object, const char* key) {
  if (!object.is_object()) return nullptr;
  const auto it = object.find(key);
  return it == object.end() || it->is_null() ? nullptr : &*it;
}

[[noreturn]] inline void wrong_type(const std::string& origin, const char* key, const char* expected,
                                    const nlohmann::json& value) {
  throw InputError(origin + ": field '" + key + "' must be " + expected + ", got " + printable(value.dump(), 80));
}

}  // namespace json_field_detail

inline double json_number_or(const nlohmann::json& object, const char* key, double fallback,
                             const std::string& origin) {
  const nlohmann::json* v = json_field_detail::present(object, key);
  if (!v) return fallback;
  if (!v->is_number()) json_field_detail::wrong_type(origin, key, "a number", *v);
  return v->get<double>();
}

inline bool json_bool_or(const nlohmann::json& object, const char* key, bool fallback, const std::string& origin) {
  const nlohmann::json* v = json_field_detail::present(object, key);
  if (!v) return fallback;
  if (!v->is_boolean()) json_field_detail::wrong_type(origin, key, "true or false", *v);
  return v->get<bool>();
}

inline std::string json_string_or(const nlohmann::json& object, const char* key, const std::string& fallback,
                                  const std::string& origin) {
  const nlohmann::json* v = json_field_detail::present(object, key);
  if (!v) return fallback;
  if (!v->is_string()) json_field_detail::wrong_type(origin, key, "a string", *v);
  return v->get<std::string>();
}

// An optional field that must be a JSON object when present; nullptr when missing or null.
inline const nlohmann::json* json_object_or_null(const nlohmann::json& object, const char* key,
                                                 const std::string& origin) {
  const nlohmann::json* v = json_field_detail::present(object, key);
  if (v && !v->is_object()) json_field_detail::wrong_type(origin, key, "a JSON object", *v);
  return v;
}

}  // namespace moeplan
