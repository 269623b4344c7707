# Installation of eplb: `cmake --install BUILD --prefix P` puts
#   P/bin/eplb-*                       every program of build/bin named eplb-*
#   P/lib/libeplb.so* and libeplb.a    the library, shared and static
#   P/include/eplb/*.h                 the public headers (some include mpi.h
#                                      or hdf5.h)
#   P/lib/cmake/eplb/                  the CMake package: find_package(eplb)
#                                      gives eplb::eplb (shared) and
#                                      eplb::eplb_static, and finds MPI (C) and
#                                      parallel HDF5 for the consumer
#   P/lib/pkgconfig/eplb.pc            for pkg-config (relocatable)
#
# The library of src/ is compiled once, as two object libraries (the MPI-
# and HDF5-free core and the engine; src/CMakeLists.txt); the in-tree
# static `eplb` has build-only private dependencies (warning flags).
# Rather than export that, two installable targets are made here from the
# same objects (they are position independent, see
# CMAKE_POSITION_INDEPENDENT_CODE): nothing is compiled twice.
# docs/install.md tells users how to consume the result.

include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(EPLB_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/eplb CACHE STRING
  "Where the CMake package of eplb is installed (relative to the prefix)")

# eplb_install_library_(TARGET TYPE): a library named libeplb made of the
# objects of libeplb, with only what a consumer needs in its interface.
function(eplb_install_library_ tgt type)
  add_library(${tgt} ${type} $<TARGET_OBJECTS:eplb_core> $<TARGET_OBJECTS:eplb_engine>)
  target_include_directories(${tgt} PUBLIC
    $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include>
    $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
  target_link_libraries(${tgt} PUBLIC MPI::MPI_C HDF5::HDF5)
  set_target_properties(${tgt} PROPERTIES OUTPUT_NAME eplb)
  # The archive of src/ is build/lib/libeplb.a already: keep ours apart.
  set_target_properties(${tgt} PROPERTIES
    ARCHIVE_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/lib/install
    LIBRARY_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/lib/install)
endfunction()

eplb_install_library_(eplb_shared SHARED)
set_target_properties(eplb_shared PROPERTIES EXPORT_NAME eplb
  VERSION ${PROJECT_VERSION} SOVERSION ${PROJECT_VERSION_MAJOR})
# eplb_build_flags brings the sanitizer link flags when EPLB_SANITIZE is on.
target_link_libraries(eplb_shared PRIVATE PkgConfig::CJSON PkgConfig::XXHASH Threads::Threads eplb_build_flags)
# Only the public eplb_* names are exported (cmake/eplb.map), not eplb__*.
target_link_options(eplb_shared PRIVATE
  LINKER:--version-script=${PROJECT_SOURCE_DIR}/cmake/eplb.map)
set_property(TARGET eplb_shared APPEND PROPERTY LINK_DEPENDS ${PROJECT_SOURCE_DIR}/cmake/eplb.map)
if(EPLB_LIBM)
  target_link_libraries(eplb_shared PRIVATE ${EPLB_LIBM})
endif()

# The static library's consumers link cJSON, xxHash, libm and threads
# themselves: the installed package defines PkgConfig::eplb_cjson and
# PkgConfig::eplb_xxhash (eplbConfig.cmake).
eplb_install_library_(eplb_static STATIC)
set_target_properties(eplb_static PROPERTIES EXPORT_NAME eplb_static)
target_link_libraries(eplb_static INTERFACE
  $<BUILD_INTERFACE:PkgConfig::CJSON> $<INSTALL_INTERFACE:PkgConfig::eplb_cjson>
  $<BUILD_INTERFACE:PkgConfig::XXHASH> $<INSTALL_INTERFACE:PkgConfig::eplb_xxhash>
  Threads::Threads)
if(EPLB_LIBM)
  target_link_libraries(eplb_static INTERFACE $<BUILD_INTERFACE:${EPLB_LIBM}> $<INSTALL_INTERFACE:m>)
endif()

install(TARGETS eplb_shared eplb_static EXPORT eplbTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})

install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/eplb
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} FILES_MATCHING PATTERN "*.h")

# eplb_collect_programs_(DIR OUT): the executables named eplb-* defined in DIR
# and its subdirectories that land in build/bin (tests and benchmarks do not).
function(eplb_collect_programs_ dir out)
  set(found "")
  get_property(tgts DIRECTORY ${dir} PROPERTY BUILDSYSTEM_TARGETS)
  foreach(t IN LISTS tgts)
    get_target_property(type ${t} TYPE)
    get_target_property(rdir ${t} RUNTIME_OUTPUT_DIRECTORY)
    if(type STREQUAL "EXECUTABLE" AND t MATCHES "^eplb-"
       AND (NOT rdir OR rdir STREQUAL "${CMAKE_RUNTIME_OUTPUT_DIRECTORY}"))
      list(APPEND found ${t})
    endif()
  endforeach()
  get_property(subdirs DIRECTORY ${dir} PROPERTY SUBDIRECTORIES)
  foreach(s IN LISTS subdirs)
    eplb_collect_programs_(${s} sub)
    list(APPEND found ${sub})
  endforeach()
  set(${out} ${found} PARENT_SCOPE)
endfunction()

# eplb-plan's HDF5 reader, loaded when it meets an HDF5 series: where the
# program looks for it, <bindir>/../<libdir>/eplb (src/formats/series_h5_load.c).
install(TARGETS eplb_h5series LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}/eplb)

eplb_collect_programs_(${PROJECT_SOURCE_DIR} EPLB_PROGRAMS)
if(EPLB_PROGRAMS)
  install(TARGETS ${EPLB_PROGRAMS} RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
endif()

# CMake package.
install(EXPORT eplbTargets NAMESPACE eplb:: FILE eplbTargets.cmake
  DESTINATION ${EPLB_INSTALL_CMAKEDIR})
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/eplbConfig.cmake.in
  ${PROJECT_BINARY_DIR}/cmake/eplbConfig.cmake
  INSTALL_DESTINATION ${EPLB_INSTALL_CMAKEDIR})
# 0.x: a new minor version may change the API.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/cmake/eplbConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/cmake/eplbConfig.cmake
  ${PROJECT_BINARY_DIR}/cmake/eplbConfigVersion.cmake
  DESTINATION ${EPLB_INSTALL_CMAKEDIR})

# pkg-config: MPI and HDF5 through their own .pc files when the system has
# them (Debian: ompi-c or mpich, hdf5-openmpi or hdf5-mpich), else the flags
# CMake found.  prefix is computed from the .pc file's own place, so the tree
# can be installed with any --prefix and moved.
set(EPLB_PC_REQUIRES "")
set(EPLB_PC_CFLAGS "")
set(EPLB_PC_LIBS "")
pkg_search_module(EPLB_PC_MPI QUIET ompi-c mpich mpi-c mpi)
if(EPLB_PC_MPI_FOUND)
  list(APPEND EPLB_PC_REQUIRES ${EPLB_PC_MPI_MODULE_NAME})
else()
  foreach(d IN LISTS MPI_C_INCLUDE_DIRS)
    string(APPEND EPLB_PC_CFLAGS " -I${d}")
  endforeach()
  foreach(l IN LISTS MPI_C_LIBRARIES)
    string(APPEND EPLB_PC_LIBS " ${l}")
  endforeach()
endif()
pkg_search_module(EPLB_PC_HDF5 QUIET hdf5-openmpi hdf5-mpich hdf5-mpi)
if(EPLB_PC_HDF5_FOUND)
  list(APPEND EPLB_PC_REQUIRES ${EPLB_PC_HDF5_MODULE_NAME})
else()
  foreach(d IN LISTS HDF5_C_INCLUDE_DIRS)
    string(APPEND EPLB_PC_CFLAGS " -I${d}")
  endforeach()
  foreach(l IN LISTS HDF5_C_LIBRARIES)
    string(APPEND EPLB_PC_LIBS " ${l}")
  endforeach()
endif()
list(JOIN EPLB_PC_REQUIRES ", " EPLB_PC_REQUIRES)
file(RELATIVE_PATH EPLB_PC_TO_PREFIX
  /prefix/${CMAKE_INSTALL_LIBDIR}/pkgconfig /prefix)
string(REGEX REPLACE "/$" "" EPLB_PC_TO_PREFIX "${EPLB_PC_TO_PREFIX}")
configure_file(${PROJECT_SOURCE_DIR}/cmake/eplb.pc.in ${PROJECT_BINARY_DIR}/cmake/eplb.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/cmake/eplb.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
