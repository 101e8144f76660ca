#include "common/progress.hpp"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ostream>
#include <utility>

namespace moeplan {

namespace {

constexpr double kRedrawInterval_s = 0.1;  // ten frames a second: smooth enough, and no flood on a slow terminal

std::string clock_text(double seconds) {
  const auto s = static_cast<long long>(std::llround(std::max(0.0, seconds)));
  char buf[32];
  if (s >= 3600) std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", s / 3600, (s / 60) % 60, s % 60);
  else std::snprintf(buf, sizeof buf, "%lld:%02lld", s / 60, s % 60);
  return buf;
}

}  // namespace

std::string Progress::line(const std::string& label, std::int64_t done, std::int64_t total, double elapsed_s, int width) {
  const std::int64_t shown = std::clamp<std::int64_t>(done, 0, std::max<std::int64_t>(total, 0));
  const double share = total > 0 ? static_cast<double>(shown) / static_cast<double>(total) : 1.0;
  const int filled = static_cast<int>(std::floor(share * width));
  std::string s = label + " [" + std::string(static_cast<std::size_t>(filled), '#') +
                  std::string(static_cast<std::size_t>(width - filled), '-') + "] " + std::to_string(shown) + "/" +
                  std::to_string(total) + "  " + std::to_string(static_cast<int>(std::floor(100 * share))) + " %  ETA ";
  if (shown <= 0) return s + "--:--";
  return s + clock_text(elapsed_s * static_cast<double>(total - shown) / static_cast<double>(shown));
}

Progress::Progress(std::string label, std::int64_t total, std::ostream& out, bool terminal)
    : label_(std::move(label)), total_(total), out_(out), terminal_(terminal), start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

Progress::~Progress() { finish(); }

std::int64_t Progress::done() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return done_;
}

void Progress::advance(std::int64_t n) {
  std::lock_guard<std::mutex> lock(mutex_);
  done_ += n;
  if (!terminal_ || finished_) return;
  const auto now = std::chrono::steady_clock::now();
  const double since_draw = std::chrono::duration<double>(now - last_draw_).count();
  if (done_ < total_ && drawn_ && since_draw < kRedrawInterval_s) return;
  last_draw_ = now;
  draw_locked(std::chrono::duration<double>(now - start_).count());
}

void Progress::step(const std::string& label) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    label_ = label;
    if (!stepped_) {
      stepped_ = true;
      if (terminal_ && !finished_) draw_locked(std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count());
      return;
    }
  }
  advance();
}

void Progress::set_total(std::int64_t total) {
  std::lock_guard<std::mutex> lock(mutex_);
  total_ = total;
}

void Progress::add_to_total(std::int64_t n) {
  std::lock_guard<std::mutex> lock(mutex_);
  total_ += n;
}

void Progress::set_label(std::string label) {
  std::lock_guard<std::mutex> lock(mutex_);
  label_ = std::move(label);
}

void Progress::draw_locked(double elapsed_s) {
  out_ << "\r" << line(label_, done_, total_, elapsed_s) << "\x1b[K" << std::flush;  // \x1b[K: erase the rest of the line
  drawn_ = true;
}

void Progress::finish() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (finished_) return;
  finished_ = true;
  if (terminal_ && drawn_) out_ << "\r\x1b[K" << std::flush;
}

bool stderr_is_terminal() { return ::isatty(STDERR_FILENO) == 1; }

}  // namespace moeplan
