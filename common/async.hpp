// common/async: start a piece of work on its own thread, or, when no thread is to be had (a process or
// address-space limit), run it where its result is first asked for. Either way .get() gives the result or rethrows.
#pragma once
#include <future>
#include <system_error>
#include <utility>

namespace moeplan {

template <typename F>
auto start_async(F f) -> std::future<decltype(f())> {
  try {
    return std::async(std::launch::async, f);
  } catch (const std::system_error&) {
    return std::async(std::launch::deferred, std::move(f));
  }
}

}  // namespace moeplan
