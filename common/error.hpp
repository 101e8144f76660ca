// Error types shared by every library. Library code throws; only app/ turns them into exit codes:
// InputError (bad input the user can fix) -> exit 2, anything else -> exit 1.
#pragma once
#include <stdexcept>
#include <string>

namespace moeplan {

// A problem with what the user gave us (a name, a file, a number, a layout). The message is one line that
// names the input and says how to fix it.
class InputError : public std::runtime_error {
 public:
  explicit InputError(const std::string& message) : std::runtime_error(message) {}
};

}  // namespace moeplan
