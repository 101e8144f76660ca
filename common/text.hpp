// Small text helpers: closest-name suggestions, number formatting with thousands separators, joining.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace moeplan {

// Edit distance between two strings (insert, delete, substitute each cost 1), case-insensitive.
int edit_distance(std::string_view a, std::string_view b);

// Up to `max_count` candidates closest to `name`: prefix/substring matches first, then by edit distance.
std::vector<std::string> closest_names(std::string_view name, const std::vector<std::string>& candidates,
                                       std::size_t max_count = 3);

// "unknown gpu 'h10' (did you mean h100-sxm, h100-pcie?); `moeplan gpus` lists them"
std::string unknown_name_message(std::string_view what, std::string_view name,
                                 const std::vector<std::string>& candidates, std::string_view list_hint);

std::string join(const std::vector<std::string>& parts, std::string_view separator);
std::string to_lower(std::string_view s);

// 401583781376 -> "401,583,781,376"
std::string with_commas(std::int64_t value);
// Fixed-point with `digits` decimals.
std::string format_fixed(double value, int digits);
// 1.5e9 bytes -> "1.50 GB" (decimal units; we say GB = 1e9 bytes everywhere in output).
std::string format_gb(double bytes, int digits = 2);
// 17184691200 -> "17.18 B"
std::string format_params(double params);

}  // namespace moeplan
