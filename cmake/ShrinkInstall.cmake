# cmake --install: the CLI, the framework library, the plugins, the SDK headers and a Shrink
# package, so that an outside project does find_package(Shrink) and shrink_add_plugin(...).
include(CMakePackageConfigHelpers)

install(TARGETS shrink_abi shrink_sdk EXPORT ShrinkTargets)
install(DIRECTORY ${PROJECT_SOURCE_DIR}/sdk/include/shrink DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT ShrinkTargets NAMESPACE shrink:: DESTINATION ${SHRINK_INSTALL_CMAKE_DIR})

configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/ShrinkConfig.cmake.in
                              ${PROJECT_BINARY_DIR}/ShrinkConfig.cmake
                              INSTALL_DESTINATION ${SHRINK_INSTALL_CMAKE_DIR}
                              PATH_VARS CMAKE_INSTALL_INCLUDEDIR SHRINK_INSTALL_PLUGIN_DIR)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/ShrinkConfigVersion.cmake
                                 COMPATIBILITY SameMajorVersion)
install(FILES ${PROJECT_BINARY_DIR}/ShrinkConfig.cmake ${PROJECT_BINARY_DIR}/ShrinkConfigVersion.cmake
              ${PROJECT_SOURCE_DIR}/cmake/ShrinkPlugin.cmake
              ${PROJECT_SOURCE_DIR}/cmake/shrink_plugin.map
        DESTINATION ${SHRINK_INSTALL_CMAKE_DIR})
