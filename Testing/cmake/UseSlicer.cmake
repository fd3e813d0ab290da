# Stub UseSlicer: the macros an extension calls, with the real ones' keywords, and checks instead of builds.

function(_slicer_stub_record kind value)
  file(APPEND ${SLICER_STUB_MANIFEST} "${kind}|${value}\n")
endfunction()

function(_slicer_stub_require_file caller base file)
  if(IS_ABSOLUTE "${file}")
    set(path "${file}")
  else()
    set(path "${base}/${file}")
  endif()
  if(NOT EXISTS "${path}" AND NOT EXISTS "${path}.py")
    message(FATAL_ERROR "${caller} given nonexistent file '${file}' (looked for ${path})")
  endif()
  if("${file}" MATCHES "(^|/)\\.\\.(/|$)")
    message(FATAL_ERROR "${caller}: '${file}' would be copied outside the destination folder")
  endif()
endfunction()

macro(ctkMacroCompilePythonScript)
  cmake_parse_arguments(_CTKPY "NO_INSTALL_SUBDIR;GLOBAL_TARGET"
    "TARGET_NAME;SOURCE_DIR;DESTINATION_DIR;INSTALL_DIR" "SCRIPTS;RESOURCES" ${ARGN})
  if(_CTKPY_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "Unknown keywords given to ctkMacroCompilePythonScript(): \"${_CTKPY_UNPARSED_ARGUMENTS}\"")
  endif()
  foreach(_var TARGET_NAME SCRIPTS DESTINATION_DIR INSTALL_DIR)
    if(NOT DEFINED _CTKPY_${_var})
      message(FATAL_ERROR "ctkMacroCompilePythonScript: ${_var} is mandatory")
    endif()
  endforeach()
  if(NOT _CTKPY_SOURCE_DIR)
    set(_CTKPY_SOURCE_DIR ${CMAKE_CURRENT_SOURCE_DIR})
  endif()
  file(RELATIVE_PATH _ctkpy_dest ${CMAKE_BINARY_DIR} ${_CTKPY_DESTINATION_DIR})
  foreach(_ctkpy_file IN LISTS _CTKPY_SCRIPTS)
    _slicer_stub_require_file(ctkMacroCompilePythonScript ${_CTKPY_SOURCE_DIR} ${_ctkpy_file})
    _slicer_stub_record(script "${_ctkpy_dest}/${_ctkpy_file}")
  endforeach()
  foreach(_ctkpy_file IN LISTS _CTKPY_RESOURCES)
    _slicer_stub_require_file(ctkMacroCompilePythonScript ${_CTKPY_SOURCE_DIR} ${_ctkpy_file})
    _slicer_stub_record(resource "${_ctkpy_dest}/${_ctkpy_file}")
  endforeach()
endmacro()

macro(slicerMacroBuildScriptedModule)
  cmake_parse_arguments(MY_SLICER "WITH_GENERIC_TESTS;WITH_SUBDIR;VERBOSE" "NAME" "SCRIPTS;RESOURCES" ${ARGN})
  if(MY_SLICER_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR
      "Unknown keywords given to slicerMacroBuildScriptedModule(): \"${MY_SLICER_UNPARSED_ARGUMENTS}\"")
  endif()
  if(NOT DEFINED MY_SLICER_NAME)
    message(FATAL_ERROR "NAME is mandatory")
  endif()
  _slicer_stub_record(module "${MY_SLICER_NAME}")
  ctkMacroCompilePythonScript(
    TARGET_NAME ${MY_SLICER_NAME}
    SCRIPTS "${MY_SLICER_SCRIPTS}"
    RESOURCES "${MY_SLICER_RESOURCES}"
    DESTINATION_DIR ${CMAKE_BINARY_DIR}/${Slicer_QTSCRIPTEDMODULES_LIB_DIR}
    INSTALL_DIR ${Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR}
    NO_INSTALL_SUBDIR
    )
endmacro()

macro(slicer_add_python_unittest)
  cmake_parse_arguments(MY "" "TESTNAME_PREFIX;SCRIPT" "SLICER_ARGS" ${ARGN})
  if(MY_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "Unknown keywords given to slicer_add_python_unittest(): \"${MY_UNPARSED_ARGUMENTS}\"")
  endif()
  if(NOT MY_SCRIPT)
    message(FATAL_ERROR "slicer_add_python_unittest: SCRIPT is mandatory")
  endif()
  _slicer_stub_require_file(slicer_add_python_unittest ${CMAKE_CURRENT_SOURCE_DIR} ${MY_SCRIPT})
  _slicer_stub_record(unittest "${MY_SCRIPT}")
endmacro()
