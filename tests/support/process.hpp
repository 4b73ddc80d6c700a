// tests/support/process.hpp — memory measurements of the test process itself
// (Linux /proc), for leak and footprint checks with generous bounds.
#pragma once

#include <unistd.h>

#include <cstddef>
#include <fstream>
#include <string>

namespace greenev::testing {

/// Resident set size of this process in bytes (0 if /proc is unreadable).
inline std::size_t resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  std::size_t total_pages = 0;
  std::size_t resident_pages = 0;
  if (!(statm >> total_pages >> resident_pages)) return 0;
  return resident_pages * static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
}

/// Number of memory mappings of this process (the kernel caps it at
/// vm.max_map_count, near 65530 by default).
inline std::size_t mapping_count() {
  std::ifstream maps("/proc/self/maps");
  std::size_t count = 0;
  for (std::string line; std::getline(maps, line);) ++count;
  return count;
}

/// The kernel page size in bytes.
inline std::size_t page_size() {
  return static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
}

}  // namespace greenev::testing
