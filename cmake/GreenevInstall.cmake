# Install rules: headers, libraries, an exported CMake package
# (find_package(greenev) with a version file) and a pkg-config file.
include(CMakePackageConfigHelpers)

set(GREENEV_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/greenev)

install(TARGETS greenev_greenlet greenev_hub greenev_monkey greenev
  EXPORT greenevTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY greenlet/include/greenev hub/include/greenev monkey/include/greenev include/greenev
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
  FILES_MATCHING PATTERN "*.hpp")
install(FILES ${PROJECT_BINARY_DIR}/generated/include/greenev/version.hpp
  ${PROJECT_BINARY_DIR}/generated/include/greenev/config.hpp
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/greenev)
install(EXPORT greenevTargets NAMESPACE greenev:: DESTINATION ${GREENEV_CMAKE_DIR})

configure_package_config_file(cmake/greenevConfig.cmake.in
  ${PROJECT_BINARY_DIR}/greenevConfig.cmake
  INSTALL_DESTINATION ${GREENEV_CMAKE_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/greenevConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/greenevConfig.cmake ${PROJECT_BINARY_DIR}/greenevConfigVersion.cmake
  DESTINATION ${GREENEV_CMAKE_DIR})

# pkg-config: the private dependencies matter for static linking.
set(GREENEV_PC_LIBDIR "\${prefix}/${CMAKE_INSTALL_LIBDIR}")
set(GREENEV_PC_INCLUDEDIR "\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}")
configure_file(cmake/greenev.pc.in ${PROJECT_BINARY_DIR}/greenev.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/greenev.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
