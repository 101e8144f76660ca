// reports/charts: SVG charts drawn from plain numbers, for the HTML reports (--format html, moeplan report). One
// function per chart kind; the frame they share (scales, ticks, axes, legend, title, source line) is written once in
// charts.cpp. Every data mark carries class "mark" and a <title> with its value, so a chart of N points has exactly
// N elements of class "mark"; the Chart's data table has one row per point (a bar, a stacked bar, a point), in the
// axes' units, with a text bar for bar charts. Colours are fixed fills readable on light and dark pages; text, axes and grid use
// currentColor and follow the page. Values must be finite (std::invalid_argument otherwise: a caller's bug).
#pragma once
#include <string>
#include <vector>

#include "reports/render.hpp"

namespace moeplan::reports {

// What every chart states: a title, both axes with their units, and where the numbers come from.
struct ChartText {
  std::string title;
  std::string x_label;  // e.g. "output tokens/s per user"
  std::string y_label;  // e.g. "GB per GPU"
  std::string source;   // e.g. "moeplan plan --model llama4-maverick; prices data/prices/gpu_hourly.yaml"
};

// Stacked vertical bars: one bar per item, one segment per entry of `segments` (same order in every bar; a zero
// value draws nothing). `limit` > 0 draws a dashed line across the bar (a capacity).
struct StackedBar {
  std::string label;
  std::vector<double> values;  // one per segment, in the y axis unit
  double limit = 0;
};
Chart stacked_bar_chart(const ChartText& text, const std::vector<std::string>& segments,
                              const std::vector<StackedBar>& bars, const std::string& limit_label = "");

// Horizontal bars, one per item, drawn in the given order; `highlight` bars take the accent colour.
struct Bar {
  std::string label;
  double value = 0;
  bool highlight = false;
};
Chart bar_chart(const ChartText& text, const std::vector<Bar>& bars, bool log_x = false);

// Lines through points, one per series, each point a circle; `references` draw labelled horizontal dashed lines.
struct Series {
  std::string name;
  std::vector<double> x, y;  // same length
};
struct ReferenceLine {
  std::string label;
  double y = 0;
};
Chart line_chart(const ChartText& text, const std::vector<Series>& series, bool log_x = false, bool log_y = false,
                       const std::vector<ReferenceLine>& references = {});

// Points; optional overlays: the Pareto front (points with `front`, joined in x order), y = x with a band of
// y = x (1 ± band) (predicted against measured), and a text label beside points that carry one.
struct ScatterPoint {
  double x = 0, y = 0;
  int series = 0;        // index into ScatterOptions::series_names (colour and legend)
  std::string label;     // drawn beside the point when not empty
  bool front = false;    // on the Pareto front
  std::string name;      // what the data table calls the point (empty: its label)
};
struct ScatterOptions {
  std::vector<std::string> series_names;  // legend; empty: one unnamed series
  bool log_x = false, log_y = false;
  bool pareto_front = false;  // join the `front` points
  bool identity = false;      // draw y = x
  double band = 0;            // > 0 with identity: the band y = x (1 ± band)
};
Chart scatter_chart(const ChartText& text, const std::vector<ScatterPoint>& points, const ScatterOptions& options);

// Escapes &, <, >, " and ' for XML/HTML text and attribute values.
std::string xml_escape(const std::string& s);

}  // namespace moeplan::reports
