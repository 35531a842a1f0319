# shrink_add_plugin(<name> SOURCES <files...> [OUTPUT_DIRECTORY <dir>] [LINK_LIBRARIES <libs...>]
#                   [NO_INSTALL])
#
# Builds a Shrink algorithm plugin: a MODULE library named <name>.so that exports only
# `shrink_plugin_entry`. C++ plugins build against shrink::sdk (LibTorch included); a plugin whose
# sources are all C gets only the C ABI header (shrink::abi) and does not link LibTorch, so its
# project needs neither LibTorch nor a C++ compiler: project(x LANGUAGES C) and
# find_package(Shrink REQUIRED COMPONENTS abi). Works in Shrink's own build and out of tree.
#
#   SOURCES           the plugin's sources (.c only: a C plugin)
#   LINK_LIBRARIES    what else it links. Plugins link with --no-undefined, so every library a
#                     plugin calls into must be named here: `m` for a C plugin using <math.h>
#                     (roundf, fabsf), or a third-party library target
#   OUTPUT_DIRECTORY  where <name>.so goes (default: the build's plugin folder, or the binary dir)
#   NO_INSTALL        leave it out of `cmake --install`
set(_SHRINK_PLUGIN_MAP "${CMAKE_CURRENT_LIST_DIR}/shrink_plugin.map" CACHE INTERNAL "")

function(shrink_add_plugin name)
  cmake_parse_arguments(ARG "NO_INSTALL" "OUTPUT_DIRECTORY" "SOURCES;LINK_LIBRARIES" ${ARGN})
  if(NOT ARG_SOURCES)
    message(FATAL_ERROR "shrink_add_plugin(${name}): SOURCES is required")
  endif()
  set(_only_c TRUE)
  foreach(src IN LISTS ARG_SOURCES)
    if(NOT src MATCHES "\\.c$")
      set(_only_c FALSE)
    endif()
  endforeach()

  if(NOT _only_c AND NOT TARGET shrink::sdk)
    message(FATAL_ERROR "shrink_add_plugin(${name}): C++ sources need the C++ SDK: "
                        "find_package(Shrink REQUIRED COMPONENTS sdk) (or no COMPONENTS)")
  endif()
  add_library(${name} MODULE ${ARG_SOURCES})
  if(_only_c)
    target_link_libraries(${name} PRIVATE shrink::abi ${ARG_LINK_LIBRARIES})
  else()
    target_link_libraries(${name} PRIVATE shrink::sdk ${ARG_LINK_LIBRARIES})
  endif()
  set_target_properties(${name} PROPERTIES PREFIX "" OUTPUT_NAME ${name})
  if(ARG_OUTPUT_DIRECTORY)
    set_target_properties(${name} PROPERTIES LIBRARY_OUTPUT_DIRECTORY ${ARG_OUTPUT_DIRECTORY})
  elseif(DEFINED SHRINK_PLUGIN_OUTPUT_DIR)
    set_target_properties(${name} PROPERTIES LIBRARY_OUTPUT_DIRECTORY ${SHRINK_PLUGIN_OUTPUT_DIR})
  endif()
  target_link_options(${name} PRIVATE "LINKER:--version-script=${_SHRINK_PLUGIN_MAP}"
                      "LINKER:--no-undefined")
  if(NOT ARG_NO_INSTALL AND DEFINED SHRINK_INSTALL_PLUGIN_DIR)
    install(TARGETS ${name} LIBRARY DESTINATION ${SHRINK_INSTALL_PLUGIN_DIR})
  endif()
endfunction()
