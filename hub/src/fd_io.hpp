// Private: small fd helpers shared by fileobject.cpp and subprocess.cpp.
#pragma once

#include <sys/types.h>

#include <cstddef>

namespace greenev::detail {

// write(2) that never raises SIGPIPE: on a pipe whose reader is gone it
// returns -1 with errno EPIPE, the signal it raised swallowed (blocked on
// this thread for the call). errno as write(2) leaves it otherwise.
ssize_t write_without_sigpipe(int fd, const void* data, std::size_t size) noexcept;

}  // namespace greenev::detail
