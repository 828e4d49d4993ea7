#include "signals.hpp"

#include <csignal>
#include <ctime>

namespace aimp::signals {
namespace {

sigset_t stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  return set;
}

}  // namespace

void block_stop_signals() {
  const sigset_t set = stop_signals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
}

int wait_for_stop_signal(const std::function<bool()>& keep_waiting) {
  const sigset_t set = stop_signals();
  const timespec poll_interval{0, 100 * 1000 * 1000};
  while (keep_waiting()) {
    const int signal = sigtimedwait(&set, nullptr, &poll_interval);
    if (signal > 0) return signal;  // else a timeout (EAGAIN) or EINTR: ask again
  }
  return 0;
}

}  // namespace aimp::signals
