# shrink_add_plugin(<name> SOURCES <files...> [OUTPUT_DIRECTORY <dir>] [LINK_LIBRARIES <libs...>]
#                   [NO_INSTALL])
#
# Builds a Shrink algorithm plugin: a MODULE library named <name>.so that exports only
# `shrink_plugin_entry`. C++ plugins build against shrink::sdk (LibTorch included); a plugin whose
# sources are all C gets only the C ABI header and does not link LibTorch. Works in Shrink's own
# build and out of tree after find_package(Shrink).
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
