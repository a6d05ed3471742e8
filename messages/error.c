/* tern_strerror & co, generated from TERN_ERRNO_MAP. */
#include <errno.h>
#include <string.h>

#include "tern/error.h"

const char *
tern_strerror(int err)
{
	switch (err) {
	case 0:
		return "success";
#define XX(name, value, msg)                                                   \
	case TERN_##name:                                                      \
		return msg;
		TERN_ERRNO_MAP(XX)
#undef XX
	default:
		break;
	}
	if (err < 0 && err > -4096)
		return strerror(-err);
	return "unknown error";
}

const char *
tern_err_name(int err)
{
	switch (err) {
	case 0:
		return "OK";
#define XX(name, value, msg)                                                   \
	case TERN_##name:                                                      \
		return "TERN_" #name;
		TERN_ERRNO_MAP(XX)
#undef XX
	default:
		break;
	}
	if (err < 0 && err > -4096) {
		const char *n = strerrorname_np(-err);
		if (n != NULL)
			return n;
	}
	return "UNKNOWN";
}
