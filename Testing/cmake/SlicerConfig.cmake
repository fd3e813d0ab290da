# Stub SlicerConfig for configuring the extension without Slicer (Testing/slicermodule/test_cmake.py).
# Strict where real Slicer is strict: unknown macro keywords, missing listed files and missing extension metadata
# are fatal. Every file a macro would copy is recorded in ${CMAKE_BINARY_DIR}/slicer_stub_manifest.txt.
set(Slicer_FOUND TRUE)
set(Slicer_USE_FILE ${CMAKE_CURRENT_LIST_DIR}/UseSlicer.cmake)
set(Slicer_EXTENSION_GENERATE_CONFIG ${CMAKE_CURRENT_LIST_DIR}/SlicerExtensionGenerateConfig.cmake)
set(Slicer_EXTENSION_CPACK ${CMAKE_CURRENT_LIST_DIR}/SlicerExtensionCPack.cmake)
set(Slicer_USE_PYTHONQT TRUE)
set(Slicer_QTSCRIPTEDMODULES_LIB_DIR lib/Slicer-5.8/qt-scripted-modules)
set(Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR lib/Slicer-5.8/qt-scripted-modules)
set(SLICER_STUB_MANIFEST ${CMAKE_BINARY_DIR}/slicer_stub_manifest.txt)
file(WRITE ${SLICER_STUB_MANIFEST} "")
