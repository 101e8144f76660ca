#include "reports/charts.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>
#include <stdexcept>

namespace moeplan::reports {

namespace {

// Okabe & Ito's colour-blind-safe palette (without its yellow, too pale on white), then six more: each readable on
// a white and on a near-black page. Twelve, so that a VRAM bar's eight weight modules, KV, activations, overhead and
// free space all differ.
constexpr const char* kPalette[] = {"#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00",
                                    "#8C564B", "#9467BD", "#7F7F7F", "#BCBD22", "#17BECF", "#E7BA52"};
constexpr std::size_t kPaletteSize = sizeof(kPalette) / sizeof(kPalette[0]);
constexpr const char* kAccent = "#D55E00";
constexpr double kWidth = 720;
constexpr double kCharWidth = 6.6;  // average width of a 12 px sans-serif character, for layout only

const char* colour(std::size_t i) { return kPalette[i % kPaletteSize]; }

// Coordinates with one decimal: enough for a 720 px drawing, and stable text for tests.
std::string px(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

std::string value_text(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}

// Tick labels: 3 significant digits, thousands as k, millions as M, billions as G (never 1e+03).
std::string tick_text(double v) {
  const double a = std::fabs(v);
  const char* suffix = "";
  double shown = v;
  if (a >= 1e9) shown = v / 1e9, suffix = "G";
  else if (a >= 1e6) shown = v / 1e6, suffix = "M";
  else if (a >= 1e3) shown = v / 1e3, suffix = "k";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g%s", shown, suffix);
  return buf;
}

void require_finite(double v, const char* what) {
  if (!std::isfinite(v)) throw std::invalid_argument(std::string("chart: non-finite ") + what);
}

// The box a line of text takes, estimated for layout: kCharEm of the font size per character (a sans-serif
// average), from 0.8 of the size above the baseline to 0.2 below; `anchor` as SVG's text-anchor.
constexpr double kCharEm = 0.6;
struct Box {
  double x0 = 0, y0 = 0, x1 = 0, y1 = 0;
  bool overlaps(const Box& o) const { return x0 < o.x1 && o.x0 < x1 && y0 < o.y1 && o.y0 < y1; }
};
Box text_box(double x, double y, const std::string& anchor, double font_size, const std::string& text) {
  std::size_t chars = 0;
  for (unsigned char c : text) chars += (c & 0xC0) != 0x80;  // code points, not bytes
  const double w = kCharEm * font_size * static_cast<double>(chars);
  const double x0 = anchor == "end" ? x - w : anchor == "middle" ? x - w / 2 : x;
  return {x0, y - 0.8 * font_size, x0 + w, y + 0.2 * font_size};
}

// A numeric axis: the data range widened to round numbers, mapped onto [from, to] pixels.
struct Scale {
  double lo = 0, hi = 1;
  bool log = false;
  double from = 0, to = 1;

  double operator()(double v) const {
    const double t = log ? (std::log10(v) - std::log10(lo)) / (std::log10(hi) - std::log10(lo)) : (v - lo) / (hi - lo);
    return from + t * (to - from);
  }
  double clamp(double v) const { return std::clamp(v, lo, hi); }

  std::vector<double> ticks() const {
    std::vector<double> out;
    if (log) {
      const int d0 = static_cast<int>(std::floor(std::log10(lo) + 1e-9)), d1 = static_cast<int>(std::ceil(std::log10(hi) - 1e-9));
      const bool fine = d1 - d0 <= 2;  // few decades: 1, 2, 5 per decade
      for (int d = d0; d <= d1; ++d)
        for (double m : {1.0, 2.0, 5.0}) {
          if (m != 1.0 && !fine) continue;
          const double v = m * std::pow(10.0, d);
          if (v >= lo * (1 - 1e-9) && v <= hi * (1 + 1e-9)) out.push_back(v);
        }
      return out;
    }
    const double step = nice_step(hi - lo);
    for (double v = std::ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9; v += step) out.push_back(std::fabs(v) < step * 1e-9 ? 0 : v);
    return out;
  }

  static double nice_step(double range) {
    const double raw = range / 5;
    const double mag = std::pow(10.0, std::floor(std::log10(raw)));
    for (double m : {1.0, 2.0, 2.5, 5.0, 10.0})
      if (raw <= m * mag * (1 + 1e-9)) return m * mag;
    return 10 * mag;
  }
};

// The range of `values` as a scale: linear ranges start at zero when `zero` (bars), log ranges span whole decades.
Scale make_scale(const std::vector<double>& values, bool log, bool zero, double from, double to) {
  Scale s;
  s.log = log;
  s.from = from;
  s.to = to;
  double lo = INFINITY, hi = -INFINITY;
  for (double v : values) {
    require_finite(v, "value");
    if (log && v <= 0) continue;  // a log axis cannot show zero or less; such marks sit on the axis
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  if (lo > hi) lo = hi = log ? 1 : 0;
  if (log) {
    s.lo = std::pow(10.0, std::floor(std::log10(lo)));
    s.hi = std::pow(10.0, std::ceil(std::log10(hi)));
    if (s.hi <= s.lo) s.hi = s.lo * 10;
    return s;
  }
  if (zero) lo = std::min(lo, 0.0), hi = std::max(hi, 0.0);
  if (hi - lo <= 0) hi = lo + (lo == 0 ? 1 : std::fabs(lo));
  const double step = Scale::nice_step(hi - lo);
  s.lo = std::floor(lo / step + 1e-9) * step;
  s.hi = std::ceil(hi / step - 1e-9) * step;
  if (s.hi <= s.lo) s.hi = s.lo + step;
  return s;
}

double position(const Scale& s, double v) { return s(s.log && v <= 0 ? s.lo : s.clamp(v)); }

struct LegendEntry {
  std::string name, colour;
  bool line = false, dashed = false;
};

// The frame every chart shares: the svg element, title, legend, plot box, numeric axes, axis labels, source line.
class Frame {
 public:
  Frame(const ChartText& text, double height, double left) : text_(text), height_(height), left_(left) {
    top_ = 58;
    bottom_ = height - 62;
    right_ = kWidth - 24;
  }
  double left() const { return left_; }
  double right() const { return right_; }
  double top() const { return top_; }
  double bottom() const { return bottom_; }
  std::ostringstream& body() { return body_; }

  // Grid lines and tick labels of a numeric axis along x (bottom) or y (left). A tick label that would overlap one
  // already drawn is left out (its grid line stays).
  void x_axis(const Scale& s) {
    for (double v : s.ticks()) {
      const std::string x = px(s(v));
      body_ << "<line class=\"grid\" x1=\"" << x << "\" y1=\"" << px(top_) << "\" x2=\"" << x << "\" y2=\"" << px(bottom_)
            << "\" stroke=\"currentColor\" stroke-opacity=\"0.15\"/>\n";
      label(s(v), bottom_ + 16, "middle", kTickFont, tick_text(v), "tick");
    }
  }
  void y_axis(const Scale& s) {
    for (double v : s.ticks()) {
      const std::string y = px(s(v));
      body_ << "<line class=\"grid\" x1=\"" << px(left_) << "\" y1=\"" << y << "\" x2=\"" << px(right_) << "\" y2=\"" << y
            << "\" stroke=\"currentColor\" stroke-opacity=\"0.15\"/>\n";
      label(left_ - 6, s(v) + 4, "end", kTickFont, tick_text(v), "tick");
    }
  }

  // Draws `text` at (x, y) when its box overlaps no label drawn so far; returns whether it did.
  bool label(double x, double y, const std::string& anchor, double font_size, const std::string& text, const std::string& cls) {
    const Box b = text_box(x, y, anchor, font_size, text);
    for (const auto& o : labels_)
      if (b.overlaps(o)) return false;
    labels_.push_back(b);
    body_ << "<text class=\"" << cls << "\" x=\"" << px(x) << "\" y=\"" << px(y) << "\" text-anchor=\"" << anchor
          << "\" font-size=\"" << px(font_size) << "\">" << xml_escape(text) << "</text>\n";
    return true;
  }

  // A point's label beside it: the first place around the point, then farther out with a leader line, where it
  // overlaps no other label (tick labels included) and stays inside the drawing; none when every place collides.
  bool point_label(double cx, double cy, const std::string& text) {
    struct Place {
      double dx, dy;
      const char* anchor;
      bool leader;
    };
    static constexpr Place kPlaces[] = {
        {6, -6, "start", false},   {6, 14, "start", false},   {-6, -6, "end", false},  {-6, 14, "end", false},
        {0, -10, "middle", false}, {0, 20, "middle", false},  {18, -18, "start", true}, {-18, -18, "end", true},
        {18, 28, "start", true},   {-18, 28, "end", true},    {0, -26, "middle", true}, {0, 36, "middle", true}};
    for (const auto& p : kPlaces) {
      const Box b = text_box(cx + p.dx, cy + p.dy, p.anchor, kPointFont, text);
      if (b.x0 < 0 || b.x1 > kWidth || b.y0 < top_ - 20 || b.y1 > bottom_ + 2) continue;
      if (!label(cx + p.dx, cy + p.dy, p.anchor, kPointFont, text, "point-label")) continue;
      if (p.leader)
        body_ << "<line class=\"leader\" x1=\"" << px(cx) << "\" y1=\"" << px(cy) << "\" x2=\"" << px(cx + p.dx * 0.7)
              << "\" y2=\"" << px(cy + p.dy * (p.dy < 0 ? 0.6 : 0.5)) << "\" stroke=\"currentColor\" stroke-opacity=\"0.5\"/>\n";
      return true;
    }
    return false;
  }
  void legend(const std::vector<LegendEntry>& entries) { legend_ = entries; }

  // The legend and the source line may need several rows: the plot moves down by the extra legend rows and the
  // drawing grows by them and by the extra source rows.
  std::string finish() const {
    std::vector<std::pair<double, double>> at;  // legend entry positions
    double x = 8, y = 38;
    for (const auto& e : legend_) {
      const double w = 22 + kCharWidth * static_cast<double>(e.name.size()) + 14;
      if (x + w > kWidth - 8 && x > 8) x = 8, y += 16;
      at.emplace_back(x, y);
      x += w;
    }
    const double shift = y - 38;
    const std::vector<std::string> source = wrap("source: " + text_.source, 118);
    const double height = height_ + shift + 12 * static_cast<double>(source.size() - 1);
    std::ostringstream o;
    o << "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" viewBox=\"0 0 " << px(kWidth) << " " << px(height)
      << "\" width=\"" << px(kWidth) << "\" height=\"" << px(height) << "\" role=\"img\" aria-label=\"" << xml_escape(text_.title)
      << "\" font-family=\"sans-serif\" font-size=\"12\" fill=\"currentColor\">\n"
      << "<title>" << xml_escape(text_.title) << "</title>\n"
      << "<text class=\"chart-title\" x=\"8\" y=\"18\" font-size=\"14\" font-weight=\"bold\">" << xml_escape(text_.title)
      << "</text>\n";
    for (std::size_t i = 0; i < legend_.size(); ++i) legend_entry(o, legend_[i], at[i].first, at[i].second);
    o << "<g transform=\"translate(0," << px(shift) << ")\">\n" << body_.str();
    // The axes themselves, over the grid and marks.
    o << "<path class=\"axis\" d=\"M" << px(left_) << "," << px(top_) << "V" << px(bottom_) << "H" << px(right_)
      << "\" fill=\"none\" stroke=\"currentColor\"/>\n"
      << "<text class=\"x-label\" x=\"" << px((left_ + right_) / 2) << "\" y=\"" << px(bottom_ + 34)
      << "\" text-anchor=\"middle\">" << xml_escape(text_.x_label) << "</text>\n"
      << "<text class=\"y-label\" transform=\"translate(14," << px((top_ + bottom_) / 2) << ") rotate(-90)\" text-anchor=\"middle\">"
      << xml_escape(text_.y_label) << "</text>\n</g>\n";
    for (std::size_t i = 0; i < source.size(); ++i)
      o << "<text class=\"source\" x=\"4\" y=\"" << px(height_ + shift - 6 + 12 * static_cast<double>(i))
        << "\" font-size=\"10\" fill-opacity=\"0.75\">" << xml_escape(source[i]) << "</text>\n";
    o << "</svg>\n";
    return o.str();
  }

 private:
  static void legend_entry(std::ostringstream& o, const LegendEntry& e, double x, double y) {
    o << "<g class=\"legend\">";
    if (e.line)
      o << "<line x1=\"" << px(x) << "\" y1=\"" << px(y - 4) << "\" x2=\"" << px(x + 16) << "\" y2=\"" << px(y - 4) << "\" stroke=\""
        << e.colour << "\" stroke-width=\"2\"" << (e.dashed ? " stroke-dasharray=\"5,3\"" : "") << "/>";
    else
      o << "<rect x=\"" << px(x) << "\" y=\"" << px(y - 10) << "\" width=\"12\" height=\"12\" fill=\"" << e.colour << "\"/>";
    o << "<text x=\"" << px(x + 20) << "\" y=\"" << px(y) << "\">" << xml_escape(e.name) << "</text></g>\n";
  }

  // Words of `text` in lines of at most `width` characters (a longer word stands alone).
  static std::vector<std::string> wrap(const std::string& text, std::size_t width) {
    std::vector<std::string> lines(1);
    std::istringstream in(text);
    std::string word;
    while (in >> word) {
      if (!lines.back().empty() && lines.back().size() + 1 + word.size() > width) lines.emplace_back();
      if (!lines.back().empty()) lines.back() += ' ';
      lines.back() += word;
    }
    return lines;
  }

  static constexpr double kTickFont = 12, kPointFont = 11;
  ChartText text_;
  double height_, left_, top_ = 0, bottom_ = 0, right_ = 0;
  std::vector<LegendEntry> legend_;
  std::vector<Box> labels_;  // tick and point labels drawn so far
  std::ostringstream body_;
};

// Category charts (bars): labels down the left, one band per item. Returns the left margin that fits the labels.
double label_margin(const std::vector<std::string>& labels) {
  std::size_t longest = 0;
  for (const auto& l : labels) longest = std::max(longest, l.size());
  return std::clamp(12 + kCharWidth * static_cast<double>(longest), 60.0, 300.0);
}

constexpr double kBand = 24;  // pixels per bar

void category_label(std::ostringstream& o, double x, double y, const std::string& label) {
  o << "<text class=\"category\" x=\"" << px(x - 6) << "\" y=\"" << px(y + 4) << "\" text-anchor=\"end\">" << xml_escape(label)
    << "</text>\n";
}

void mark_rect(std::ostringstream& o, const std::string& cls, double x, double y, double w, double h, const char* fill,
               const std::string& tip) {
  o << "<rect class=\"mark " << cls << "\" x=\"" << px(x) << "\" y=\"" << px(y) << "\" width=\"" << px(std::max(w, 0.0))
    << "\" height=\"" << px(h) << "\" fill=\"" << fill << "\"><title>" << xml_escape(tip) << "</title></rect>\n";
}

void mark_circle(std::ostringstream& o, const std::string& cls, double x, double y, const char* fill, const std::string& tip) {
  o << "<circle class=\"mark " << cls << "\" cx=\"" << px(x) << "\" cy=\"" << px(y) << "\" r=\"4\" fill=\"" << fill
    << "\"><title>" << xml_escape(tip) << "</title></circle>\n";
}

std::string polyline(const std::vector<std::pair<double, double>>& pts, const std::string& cls, const char* stroke,
                     bool dashed) {
  std::ostringstream o;
  o << "<polyline class=\"" << cls << "\" fill=\"none\" stroke=\"" << stroke << "\" stroke-width=\"2\""
    << (dashed ? " stroke-dasharray=\"5,3\"" : "") << " points=\"";
  for (std::size_t i = 0; i < pts.size(); ++i) o << (i ? " " : "") << px(pts[i].first) << "," << px(pts[i].second);
  o << "\"/>\n";
  return o.str();
}

// A number in a chart's data table: whole numbers in full (context lengths, request counts), others as value_text.
std::string data_text(double v) {
  if (std::fabs(v) < 1e15 && v == std::floor(v)) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.0f", v);
    return buf;
  }
  return value_text(v);
}

// The chart's numbers as a table (--format md): one row per data point, added by the chart kind.
Chart chart_data(const ChartText& text, std::vector<std::string> columns, std::vector<bool> right_align) {
  Chart c;
  c.data.title = "Chart: " + text.title;
  c.data.columns = std::move(columns);
  c.data.right_align = std::move(right_align);
  c.notes.push_back("source: " + text.source);
  return c;
}

// A bar of text for a Markdown table: `value` of `largest` as up to kTextBarWidth full blocks (linear, whatever the
// chart's axis), at least a thin one for a positive value.
constexpr int kTextBarWidth = 20;
std::string text_bar(double value, double largest) {
  if (!(value > 0) || !(largest > 0)) return "";
  const int n = static_cast<int>(std::lround(kTextBarWidth * value / largest));
  if (n == 0) return "\xE2\x96\x8F";  // U+258F, a thin block
  std::string bar;
  for (int i = 0; i < n; ++i) bar += "\xE2\x96\x88";  // U+2588, a full block
  return bar;
}

}  // namespace

std::string xml_escape(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

Chart stacked_bar_chart(const ChartText& text, const std::vector<std::string>& segments,
                        const std::vector<StackedBar>& bars, const std::string& limit_label) {
  std::vector<std::string> labels;
  std::vector<double> extents{0};
  for (const auto& b : bars) {
    if (b.values.size() != segments.size()) throw std::invalid_argument("stacked_bar_chart: a bar's values do not match the segments");
    labels.push_back(b.label);
    double sum = 0;
    for (double v : b.values) require_finite(v, "bar value"), sum += std::max(v, 0.0);
    extents.push_back(sum);
    if (b.limit > 0) extents.push_back(b.limit);
  }
  Frame f(text, 58 + 62 + kBand * static_cast<double>(std::max<std::size_t>(bars.size(), 1)) + 8, label_margin(labels));
  const Scale x = make_scale(extents, false, true, f.left(), f.right());
  f.x_axis(x);
  std::vector<LegendEntry> legend;
  for (std::size_t s = 0; s < segments.size(); ++s) legend.push_back({segments[s], colour(s)});
  bool any_limit = false;
  auto& o = f.body();
  for (std::size_t i = 0; i < bars.size(); ++i) {
    const auto& b = bars[i];
    const double y = f.top() + 4 + kBand * static_cast<double>(i);
    category_label(o, f.left(), y + kBand / 2 - 2, b.label);
    double at = 0;
    for (std::size_t s = 0; s < segments.size(); ++s) {
      const double v = std::max(b.values[s], 0.0);
      if (v <= 0) continue;
      mark_rect(o, "segment", x(at), y, x(at + v) - x(at), kBand - 6, colour(s), b.label + ": " + segments[s] + " " + value_text(v));
      at += v;
    }
    if (b.limit > 0) {
      any_limit = true;
      o << "<line class=\"limit\" x1=\"" << px(x(b.limit)) << "\" y1=\"" << px(y - 2) << "\" x2=\"" << px(x(b.limit)) << "\" y2=\""
        << px(y + kBand - 4) << "\" stroke=\"currentColor\" stroke-width=\"2\" stroke-dasharray=\"4,2\"/>\n";
    }
  }
  if (any_limit && !limit_label.empty()) legend.push_back({limit_label, "currentColor", true, true});
  f.legend(legend);
  // The table: one row per bar, its segments, total and limit in the value axis' unit, and the total as a text bar.
  std::vector<std::string> columns{text.y_label};
  for (const auto& s : segments) columns.push_back(s);
  columns.push_back("total, " + text.x_label);
  if (any_limit) columns.push_back(limit_label.empty() ? "limit" : limit_label);
  columns.push_back("");
  std::vector<bool> right(columns.size(), true);
  right.front() = false;
  right.back() = false;
  Chart c = chart_data(text, columns, right);
  const double largest = *std::max_element(extents.begin(), extents.end());
  for (const auto& b : bars) {
    std::vector<std::string> row{b.label};
    double total = 0;
    for (double v : b.values) row.push_back(data_text(std::max(v, 0.0))), total += std::max(v, 0.0);
    row.push_back(data_text(total));
    if (any_limit) row.push_back(b.limit > 0 ? data_text(b.limit) : "");
    row.push_back(text_bar(total, largest));
    c.data.rows.push_back(std::move(row));
  }
  c.svg = f.finish();
  return c;
}

Chart bar_chart(const ChartText& text, const std::vector<Bar>& bars, bool log_x) {
  std::vector<std::string> labels;
  std::vector<double> values;
  for (const auto& b : bars) labels.push_back(b.label), values.push_back(b.value);
  Frame f(text, 58 + 62 + kBand * static_cast<double>(std::max<std::size_t>(bars.size(), 1)) + 8, label_margin(labels));
  const Scale x = make_scale(values, log_x, !log_x, f.left(), f.right());
  f.x_axis(x);
  auto& o = f.body();
  for (std::size_t i = 0; i < bars.size(); ++i) {
    const auto& b = bars[i];
    const double y = f.top() + 4 + kBand * static_cast<double>(i);
    category_label(o, f.left(), y + kBand / 2 - 2, b.label);
    const double x0 = log_x ? f.left() : x(0);
    mark_rect(o, b.highlight ? "bar highlight" : "bar", x0, y, position(x, b.value) - x0, kBand - 6,
              b.highlight ? kAccent : colour(0), b.label + ": " + value_text(b.value));
    o << "<text class=\"value\" x=\"" << px(position(x, b.value) + 4) << "\" y=\"" << px(y + kBand / 2 + 1) << "\" font-size=\"10\">"
      << value_text(b.value) << "</text>\n";
  }
  Chart c = chart_data(text, {text.y_label, text.x_label, ""}, {false, true, false});
  const double largest = values.empty() ? 0 : *std::max_element(values.begin(), values.end());
  for (const auto& b : bars) c.data.rows.push_back({b.label + (b.highlight ? " (highlighted)" : ""), data_text(b.value), text_bar(b.value, largest)});
  c.svg = f.finish();
  return c;
}

Chart line_chart(const ChartText& text, const std::vector<Series>& series, bool log_x, bool log_y,
                 const std::vector<ReferenceLine>& references) {
  std::vector<double> xs, ys;
  for (const auto& s : series) {
    if (s.x.size() != s.y.size()) throw std::invalid_argument("line_chart: x and y differ in length");
    xs.insert(xs.end(), s.x.begin(), s.x.end());
    ys.insert(ys.end(), s.y.begin(), s.y.end());
  }
  for (const auto& r : references) ys.push_back(r.y);
  Frame f(text, 380, 72);
  const Scale x = make_scale(xs, log_x, false, f.left(), f.right());
  const Scale y = make_scale(ys, log_y, !log_y, f.bottom(), f.top());
  f.x_axis(x);
  f.y_axis(y);
  auto& o = f.body();
  std::vector<LegendEntry> legend;
  for (std::size_t i = 0; i < series.size(); ++i) {
    const auto& s = series[i];
    legend.push_back({s.name, colour(i), true});
    std::vector<std::pair<double, double>> pts;
    for (std::size_t k = 0; k < s.x.size(); ++k) pts.emplace_back(position(x, s.x[k]), position(y, s.y[k]));
    o << polyline(pts, "series", colour(i), false);
    for (std::size_t k = 0; k < s.x.size(); ++k)
      mark_circle(o, "point", pts[k].first, pts[k].second, colour(i), s.name + ": " + value_text(s.x[k]) + ", " + value_text(s.y[k]));
  }
  for (const auto& r : references) {
    const double yr = position(y, r.y);
    o << "<line class=\"reference\" x1=\"" << px(f.left()) << "\" y1=\"" << px(yr) << "\" x2=\"" << px(f.right()) << "\" y2=\""
      << px(yr) << "\" stroke=\"currentColor\" stroke-dasharray=\"5,3\"/>\n"
      << "<text x=\"" << px(f.right() - 4) << "\" y=\"" << px(yr - 4) << "\" text-anchor=\"end\" font-size=\"10\">"
      << xml_escape(r.label) << "</text>\n";
  }
  f.legend(legend);
  Chart c = chart_data(text, {"series", text.x_label, text.y_label}, {false, true, true});
  for (const auto& s : series)
    for (std::size_t k = 0; k < s.x.size(); ++k) c.data.rows.push_back({s.name, data_text(s.x[k]), data_text(s.y[k])});
  for (const auto& r : references) c.notes.insert(c.notes.end() - 1, "dashed line: " + r.label + " (" + value_text(r.y) + ")");
  c.svg = f.finish();
  return c;
}

Chart scatter_chart(const ChartText& text, const std::vector<ScatterPoint>& points, const ScatterOptions& opt) {
  std::vector<double> xs, ys;
  for (const auto& p : points) xs.push_back(p.x), ys.push_back(p.y);
  if (opt.identity) {  // one range on both axes, so that y = x is the diagonal
    xs.insert(xs.end(), ys.begin(), ys.end());
    ys = xs;
  }
  Frame f(text, 420, 72);
  const Scale x = make_scale(xs, opt.log_x, false, f.left(), f.right());
  const Scale y = make_scale(ys, opt.log_y, false, f.bottom(), f.top());
  f.x_axis(x);
  f.y_axis(y);
  auto& o = f.body();
  std::vector<LegendEntry> legend;
  if (opt.identity) {
    // The band and the diagonal, sampled along x with y held inside the plot (a clipped straight line).
    std::vector<std::pair<double, double>> upper, lower, diagonal;
    for (int k = 0; k <= 64; ++k) {
      const double t = k / 64.0;
      const double v = x.log ? x.lo * std::pow(x.hi / x.lo, t) : x.lo + t * (x.hi - x.lo);
      diagonal.emplace_back(x(v), y(y.clamp(v)));
      upper.emplace_back(x(v), y(y.clamp(v * (1 + opt.band))));
      lower.emplace_back(x(v), y(y.clamp(std::max(v * (1 - opt.band), y.log ? y.lo : -INFINITY))));
    }
    if (opt.band > 0) {
      o << "<polygon class=\"band\" fill=\"currentColor\" fill-opacity=\"0.12\" points=\"";
      for (const auto& p : upper) o << px(p.first) << "," << px(p.second) << " ";
      for (auto it = lower.rbegin(); it != lower.rend(); ++it) o << px(it->first) << "," << px(it->second) << " ";
      o << "\"/>\n";
      legend.push_back({"y = x ± " + value_text(opt.band * 100) + " %", "currentColor"});
    }
    o << polyline(diagonal, "identity", "currentColor", true);
    legend.push_back({"y = x", "currentColor", true, true});
  }
  if (opt.pareto_front) {
    std::vector<std::pair<double, double>> front;
    for (const auto& p : points)
      if (p.front) front.emplace_back(p.x, p.y);
    std::sort(front.begin(), front.end());
    for (auto& p : front) p = {position(x, p.first), position(y, p.second)};
    if (front.size() > 1) o << polyline(front, "front", kAccent, false);
    legend.push_back({"Pareto front", kAccent, true});
  }
  for (std::size_t i = 0; i < opt.series_names.size(); ++i) legend.insert(legend.begin() + static_cast<long>(i), {opt.series_names[i], colour(i)});
  for (const auto& p : points) {
    const double cx = position(x, p.x), cy = position(y, p.y);
    const std::string name = static_cast<std::size_t>(p.series) < opt.series_names.size() ? opt.series_names[static_cast<std::size_t>(p.series)] : "";
    mark_circle(o, p.front ? "point on-front" : "point", cx, cy, colour(static_cast<std::size_t>(std::max(p.series, 0))),
                (p.label.empty() ? name : p.label) + ": " + value_text(p.x) + ", " + value_text(p.y));
    if (!p.label.empty()) f.point_label(cx, cy, p.label);
  }
  f.legend(legend);
  std::vector<std::string> columns{"point"};
  if (!opt.series_names.empty()) columns.push_back("series");
  columns.insert(columns.end(), {text.x_label, text.y_label});
  if (opt.pareto_front) columns.push_back("Pareto front");
  Chart c = chart_data(text, columns, std::vector<bool>(columns.size(), false));
  std::fill(c.data.right_align.end() - (opt.pareto_front ? 3 : 2), c.data.right_align.end() - (opt.pareto_front ? 1 : 0), true);
  for (const auto& p : points) {
    std::vector<std::string> row{p.name.empty() ? p.label : p.name};
    if (!opt.series_names.empty())
      row.push_back(static_cast<std::size_t>(p.series) < opt.series_names.size() ? opt.series_names[static_cast<std::size_t>(p.series)] : "");
    row.insert(row.end(), {data_text(p.x), data_text(p.y)});
    if (opt.pareto_front) row.push_back(p.front ? "yes" : "");
    c.data.rows.push_back(std::move(row));
  }
  if (opt.identity) c.notes.insert(c.notes.begin(), "y = x" + (opt.band > 0 ? " with a band of ± " + value_text(opt.band * 100) + " %" : std::string()) + " marks a perfect prediction");
  c.svg = f.finish();
  return c;
}

}  // namespace moeplan::reports
