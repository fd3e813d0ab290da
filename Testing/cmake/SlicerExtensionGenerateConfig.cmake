# Stub: the extension description must be complete (the Extensions Index reads these).
foreach(_var HOMEPAGE CATEGORY CONTRIBUTORS DESCRIPTION ICONURL SCREENSHOTURLS DEPENDS)
  if("${EXTENSION_${_var}}" STREQUAL "")
    message(FATAL_ERROR "EXTENSION_${_var} is not set")
  endif()
  file(APPEND ${SLICER_STUB_MANIFEST} "metadata|${_var}=${EXTENSION_${_var}}\n")
endforeach()
