/* tern_version: the version of the libtern that is loaded. */
#include "tern/tern.h"

#ifndef TERN_VERSION_STRING
#error "TERN_VERSION_STRING comes from CMakeLists.txt (project version)"
#endif

const char *
tern_version(void)
{
	return TERN_VERSION_STRING;
}
