// common/progress: a progress bar with an ETA for commands that may run longer than about 2 s (plan sweeps,
// calibrate, validate, run). Drawn on a terminal only: when the stream is not one, nothing is written. advance() may
// be called from several threads at once (the plan's serving checks run in parallel).
#pragma once
#include <chrono>
#include <cstdint>
#include <iosfwd>
#include <mutex>
#include <string>

namespace moeplan {

class Progress {
 public:
  // `terminal`: whether `out` is a terminal (progress_on_stderr() asks isatty); when false nothing is ever written.
  Progress(std::string label, std::int64_t total, std::ostream& out, bool terminal);
  ~Progress();  // finish()
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  // `n` more units done; redraws at most every 0.1 s, and when the last unit is done.
  void advance(std::int64_t n = 1);
  // For jobs that announce steps: the previous step (if any) is done, and `label` names the one starting now.
  void step(const std::string& label);
  // The job learns its size once it has checked its input.
  void set_total(std::int64_t total);
  // `n` more units to do (a job whose phases learn their size as they start).
  void add_to_total(std::int64_t n);
  // Names the phase now running (e.g. "plan: sweep", then "plan: serving checks"), from the next redraw on.
  void set_label(std::string label);
  // Erases the bar (the command's own output follows on a clean line). Idempotent.
  void finish();
  std::int64_t done() const;

  // One bar: "label [#########-----------] 12/40  30 %  ETA 0:07" (ETA = elapsed x (total - done) / done, shown
  // once a unit is done; "ETA --:--" before). `width`: characters between the brackets.
  static std::string line(const std::string& label, std::int64_t done, std::int64_t total, double elapsed_s, int width = 30);

 private:
  void draw_locked(double elapsed_s);

  std::string label_;
  std::int64_t total_ = 0, done_ = 0;
  std::ostream& out_;
  bool terminal_ = false, drawn_ = false, finished_ = false, stepped_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_;
  mutable std::mutex mutex_;
};

// Whether standard error is a terminal (isatty(2)): commands pass it to Progress with std::cerr.
bool stderr_is_terminal();

}  // namespace moeplan
