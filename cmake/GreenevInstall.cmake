# Install rules: headers, libraries, an exported CMake package
# (find_package(greenev) with a version file) and a pkg-config file.
#
# One prefix may hold both variants: configure, build and install greenev twice,
# with GREENEV_SHARED_LIBS OFF and ON. Each install writes its own targets file
# (greenevTargets-static.cmake or greenevTargets-shared.cmake) and its own
# libraries; everything else it installs is the same file either way, so the
# order of the two installs does not matter. greenevConfig.cmake picks the
# variant a consumer asks for (cmake/greenevConfig.cmake.in).
include(CMakePackageConfigHelpers)

set(GREENEV_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/greenev)
if(GREENEV_SHARED_LIBS)
  set(GREENEV_VARIANT shared)
else()
  set(GREENEV_VARIANT static)
endif()

if(GREENEV_SHARED_LIBS)
  # Installed side by side: libgreenev_monkey.so finds libgreenev_net.so (it
  # libgreenev_hub.so, and that libgreenev_greenlet.so) in its own directory, outside the system paths too,
  # even when a program names only the monkey library.
  set_target_properties(greenev_hub greenev_net greenev_monkey greenev_web PROPERTIES INSTALL_RPATH "$ORIGIN")
endif()
install(TARGETS greenev_greenlet greenev_hub greenev_net greenev_monkey greenev_web greenev
  EXPORT greenevTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
# The LD_PRELOAD library is used by path, never linked: not part of the package.
install(TARGETS greenev_preload LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(DIRECTORY greenlet/include/greenev hub/include/greenev net/include/greenev monkey/include/greenev web/include/greenev
  include/greenev
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
  FILES_MATCHING PATTERN "*.hpp")
install(FILES ${PROJECT_BINARY_DIR}/generated/include/greenev/version.hpp
  ${PROJECT_BINARY_DIR}/generated/include/greenev/config.hpp
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/greenev)
install(EXPORT greenevTargets NAMESPACE greenev::
  FILE greenevTargets-${GREENEV_VARIANT}.cmake
  DESTINATION ${GREENEV_CMAKE_DIR})

configure_package_config_file(cmake/greenevConfig.cmake.in
  ${PROJECT_BINARY_DIR}/greenevConfig.cmake
  INSTALL_DESTINATION ${GREENEV_CMAKE_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/greenevConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/greenevConfig.cmake ${PROJECT_BINARY_DIR}/greenevConfigVersion.cmake
  DESTINATION ${GREENEV_CMAKE_DIR})

# pkg-config: one file for both variants. Libs is what a program needs against
# the shared libraries (Boost.Context too: the inline switch calls it);
# `pkg-config --static` adds what the static ones need (see cmake/greenev.pc.in).
# Relocatable: the prefix is found from where the .pc file lies (lib/pkgconfig, or
# lib/<multiarch>/pkgconfig for a /usr install on Debian).
file(RELATIVE_PATH GREENEV_PC_TO_PREFIX "/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/")
string(REGEX REPLACE "/$" "" GREENEV_PC_TO_PREFIX "${GREENEV_PC_TO_PREFIX}")
set(GREENEV_PC_LIBDIR "\${prefix}/${CMAKE_INSTALL_LIBDIR}")
set(GREENEV_PC_INCLUDEDIR "\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}")
set(GREENEV_PC_DATADIR "\${prefix}/${CMAKE_INSTALL_DATADIR}")
configure_file(cmake/greenev.pc.in ${PROJECT_BINARY_DIR}/greenev.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/greenev.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
