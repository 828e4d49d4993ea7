// Stop signals handled synchronously: blocked in every thread, awaited by main.
#pragma once

#include <functional>

namespace aimp::signals {

// Blocks SIGTERM and SIGINT in the calling thread and in every thread it starts afterwards,
// and ignores SIGPIPE (a client that hangs up must not end the process). Call first in main.
void block_stop_signals();

// Waits until SIGTERM or SIGINT arrives and returns its number, or returns 0 as soon as
// keep_waiting() is false (it is asked every 100 ms).
int wait_for_stop_signal(const std::function<bool()>& keep_waiting);

}  // namespace aimp::signals
