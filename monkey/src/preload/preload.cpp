// libgreenev_preload.so: greenev's interposers and the runtime they need, a
// private copy of every object of the three layers, exporting only the libc
// names (version script in monkey/CMakeLists.txt). docs/design.md, "Interposition", says
// what it is for. GREENEV_PATCH=all in the environment patches every group
// when the library is loaded (the default is to patch nothing).
#include <cstdlib>
#include <cstring>

#include <greenev/monkey.hpp>

namespace {

// Runs when the dynamic linker loads the library, before the program's
// static initialisers: only reads the environment and sets flags.
__attribute__((constructor)) void patch_from_environment() noexcept {
  const char* value = std::getenv("GREENEV_PATCH");
  if (value != nullptr && std::strcmp(value, "all") == 0) greenev::monkey::patch_all();
}

}  // namespace
