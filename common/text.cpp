#include "common/text.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <numeric>

namespace moeplan {

std::string to_lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

int edit_distance(std::string_view a_in, std::string_view b_in) {
  const std::string a = to_lower(a_in), b = to_lower(b_in);
  std::vector<int> prev(b.size() + 1), cur(b.size() + 1);
  std::iota(prev.begin(), prev.end(), 0);
  for (std::size_t i = 1; i <= a.size(); ++i) {
    cur[0] = static_cast<int>(i);
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const int substitute = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, substitute});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::vector<std::string> closest_names(std::string_view name, const std::vector<std::string>& candidates,
                                       std::size_t max_count) {
  const std::string needle = to_lower(name);
  struct Scored {
    int score;
    std::string name;
  };
  std::vector<Scored> scored;
  for (const auto& c : candidates) {
    const std::string lc = to_lower(c);
    int score = edit_distance(needle, lc);
    // A candidate that contains what was typed (or is contained in it) is a better hint than raw distance says.
    if (!needle.empty() && (lc.find(needle) != std::string::npos || needle.find(lc) != std::string::npos)) score -= 100;
    scored.push_back({score, c});
  }
  std::stable_sort(scored.begin(), scored.end(), [](const Scored& x, const Scored& y) { return x.score < y.score; });
  std::vector<std::string> out;
  const int limit = std::max<int>(3, static_cast<int>(needle.size()) / 2);
  for (const auto& s : scored) {
    if (out.size() >= max_count) break;
    if (s.score <= limit) out.push_back(s.name);
  }
  return out;
}

std::string unknown_name_message(std::string_view what, std::string_view name,
                                 const std::vector<std::string>& candidates, std::string_view list_hint) {
  std::string msg = "unknown " + std::string(what) + " '" + printable(name) + "'";
  const auto close = closest_names(name, candidates);
  if (!close.empty()) msg += " (did you mean " + join(close, ", ") + "?)";
  if (!list_hint.empty()) msg += "; " + std::string(list_hint);
  return msg;
}

std::string join(const std::vector<std::string>& parts, std::string_view separator) {
  std::string out;
  for (std::size_t i = 0; i < parts.size(); ++i) {
    if (i) out += separator;
    out += parts[i];
  }
  return out;
}

namespace {

// Length of the valid UTF-8 sequence starting at s[i] (1 to 4), or 0 when the bytes there are not one
// (overlong forms, surrogates and code points above U+10FFFF are invalid too, as in RFC 3629).
std::size_t utf8_length(std::string_view s, std::size_t i) {
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = byte(i);
  std::size_t n = 0;
  std::uint32_t cp = 0;
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) n = 2, cp = c & 0x1Fu;
  else if (c >= 0xE0 && c <= 0xEF) n = 3, cp = c & 0x0Fu;
  else if (c >= 0xF0 && c <= 0xF4) n = 4, cp = c & 0x07u;
  else return 0;
  if (i + n > s.size()) return 0;
  for (std::size_t k = 1; k < n; ++k) {
    if ((byte(i + k) & 0xC0u) != 0x80u) return 0;
    cp = (cp << 6) | (byte(i + k) & 0x3Fu);
  }
  if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return n;
}

std::string escape(std::string_view text, std::size_t max_bytes, bool escape_backslash) {
  std::string out;
  std::size_t i = 0;
  while (i < text.size() && out.size() < max_bytes) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    std::size_t n = utf8_length(text, i);
    if (n == 2 && c == 0xC2 && static_cast<unsigned char>(text[i + 1]) < 0xA0) n = 0;  // C1 controls (U+0080..U+009F)
    if (c == '\\' && escape_backslash) out += "\\\\";
    else if (c == '\n') out += "\\n";
    else if (c == '\t') out += "\\t";
    else if (c == '\r') out += "\\r";
    else if (n == 0 || c < 0x20 || c == 0x7F) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02X", static_cast<unsigned>(c));
      out += buf;
    } else {
      out.append(text.substr(i, n));
      i += n;
      continue;
    }
    ++i;
  }
  if (i < text.size()) out += "... (" + std::to_string(text.size()) + " bytes)";
  return out;
}

}  // namespace

std::string printable(std::string_view text, std::size_t max_bytes) { return escape(text, max_bytes, true); }

std::string printable_message(std::string_view message, std::size_t max_bytes) { return escape(message, max_bytes, false); }

std::string with_commas(std::int64_t value) {
  const bool negative = value < 0;
  std::string digits = std::to_string(negative ? -value : value);
  std::string out;
  const int n = static_cast<int>(digits.size());
  for (int i = 0; i < n; ++i) {
    if (i && (n - i) % 3 == 0) out += ',';
    out += digits[static_cast<std::size_t>(i)];
  }
  return negative ? "-" + out : out;
}

std::string format_fixed(double value, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, value);
  return buf;
}

std::string format_gb(double bytes, int digits) { return format_fixed(bytes / 1e9, digits) + " GB"; }

std::string format_params(double params) {
  if (std::fabs(params) >= 1e9) return format_fixed(params / 1e9, 2) + " B";
  if (std::fabs(params) >= 1e6) return format_fixed(params / 1e6, 2) + " M";
  return format_fixed(params, 0);
}

}  // namespace moeplan
