// Well-formedness of the HTML/SVG the reports write (XHTML style): every tag closed in order, attribute values
// quoted, no raw '<' or stray '&' in text. Returns "" when well formed, else what is wrong and where.
#pragma once
#include <cstddef>
#include <regex>
#include <string>
#include <vector>

namespace moeplan::test {

inline std::string markup_error(const std::string& s) {
  std::vector<std::string> open;
  static const std::regex entity("^&(amp|lt|gt|quot|#39|#[0-9]+);");
  std::size_t i = 0;
  while (i < s.size()) {
    if (s[i] == '&') {
      std::smatch m;
      const std::string rest = s.substr(i, 8);
      if (!std::regex_search(rest, m, entity)) return "stray '&' at " + std::to_string(i);
      i += static_cast<std::size_t>(m.length(0));
      continue;
    }
    if (s[i] == '>') return "stray '>' outside a tag at " + std::to_string(i);
    if (s[i] != '<') {
      ++i;
      continue;
    }
    if (s.compare(i, 4, "<!--") == 0) {
      const auto end = s.find("-->", i);
      if (end == std::string::npos) return "unclosed comment at " + std::to_string(i);
      i = end + 3;
      continue;
    }
    const auto end = s.find('>', i);
    if (end == std::string::npos) return "unclosed tag at " + std::to_string(i);
    const std::string tag = s.substr(i + 1, end - i - 1);
    i = end + 1;
    if (tag.empty()) return "empty tag";
    if (tag[0] == '!' || tag[0] == '?') continue;  // <!DOCTYPE html>, <?xml ...?>
    std::size_t quotes = 0;
    for (char c : tag) quotes += c == '"';
    if (quotes % 2) return "unbalanced quotes in <" + tag + ">";
    if (tag.find('<') != std::string::npos) return "'<' inside <" + tag + ">";
    if (tag[0] == '/') {
      const std::string name = tag.substr(1);
      if (open.empty() || open.back() != name)
        return "</" + name + "> closes <" + (open.empty() ? std::string("nothing") : open.back()) + ">";
      open.pop_back();
      continue;
    }
    const std::string name = tag.substr(0, tag.find_first_of(" \n/"));
    if (tag.back() == '/') continue;  // self-closed
    open.push_back(name);
    if (name == "style") {  // CSS is text; it may hold '>' (child selectors) but never '<'
      const auto close = s.find("</style>", i);
      if (close == std::string::npos) return "unclosed <style>";
      if (s.substr(i, close - i).find('<') != std::string::npos) return "'<' inside <style>";
      i = close;
    }
  }
  if (!open.empty()) return "<" + open.back() + "> never closed";
  return "";
}

// Occurrences of `needle` in `s`.
inline std::size_t count_of(const std::string& s, const std::string& needle) {
  std::size_t n = 0;
  for (auto at = s.find(needle); at != std::string::npos; at = s.find(needle, at + needle.size())) ++n;
  return n;
}

}  // namespace moeplan::test
