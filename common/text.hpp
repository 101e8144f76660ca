// Small text helpers: closest-name suggestions, number formatting with thousands separators, joining, and the
// escaping of user text echoed in messages.
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

// User text as it may appear inside a one-line message: control bytes (newline, ESC, ...) and bytes that are not
// valid UTF-8 become \n, \t, \xNN; text longer than `max_bytes` is cut, saying how long it was. Every value a
// message echoes from the command line, a file name or a file goes through this.
std::string printable(std::string_view text, std::size_t max_bytes = 120);
// printable() of a whole message: one line of at most `max_bytes`, with backslashes left as they are.
std::string printable_message(std::string_view message, std::size_t max_bytes = 2000);
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
