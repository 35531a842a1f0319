# cmake --install: the CLI, the framework library, the plugins, the SDK headers, the plugin
# templates and a Shrink package, so that an outside project does find_package(Shrink) and
# shrink_add_plugin(...). Two export sets, so that a C plugin's project finds shrink::abi without
# LibTorch, OpenMP or a C++ compiler (find_package(Shrink COMPONENTS abi)).
include(CMakePackageConfigHelpers)

set(SHRINK_INSTALL_TEMPLATE_DIR ${CMAKE_INSTALL_DATADIR}/shrink/templates)

install(TARGETS shrink_abi EXPORT ShrinkAbiTargets)
install(TARGETS shrink_sdk EXPORT ShrinkSdkTargets)
install(DIRECTORY ${PROJECT_SOURCE_DIR}/sdk/include/shrink DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/sdk/templates/ DESTINATION ${SHRINK_INSTALL_TEMPLATE_DIR})
install(EXPORT ShrinkAbiTargets NAMESPACE shrink:: DESTINATION ${SHRINK_INSTALL_CMAKE_DIR})
install(EXPORT ShrinkSdkTargets NAMESPACE shrink:: DESTINATION ${SHRINK_INSTALL_CMAKE_DIR})

configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/ShrinkConfig.cmake.in
                              ${PROJECT_BINARY_DIR}/ShrinkConfig.cmake
                              INSTALL_DESTINATION ${SHRINK_INSTALL_CMAKE_DIR}
                              PATH_VARS CMAKE_INSTALL_INCLUDEDIR SHRINK_INSTALL_PLUGIN_DIR
                                        SHRINK_INSTALL_TEMPLATE_DIR)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/ShrinkConfigVersion.cmake
                                 COMPATIBILITY SameMajorVersion)
install(FILES ${PROJECT_BINARY_DIR}/ShrinkConfig.cmake ${PROJECT_BINARY_DIR}/ShrinkConfigVersion.cmake
              ${PROJECT_SOURCE_DIR}/cmake/ShrinkPlugin.cmake
              ${PROJECT_SOURCE_DIR}/cmake/shrink_plugin.map
        DESTINATION ${SHRINK_INSTALL_CMAKE_DIR})
