/* version.c - the library's version, as built (from CMake's project()). */
#include "eplb/eplb.h"

#ifndef EPLB_VERSION_STRING
#define EPLB_VERSION_STRING "0.0.0"
#endif

const char *eplb_version(void) { return EPLB_VERSION_STRING; }
