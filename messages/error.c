/* tern_strerror & co, generated from TERN_ERRNO_MAP; the internal terni_errf and terni_verrf,
 * the one place tern formats a reason into a caller's buffer. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "messages/msg.h"
#include "tern/error.h"

void
terni_verrf(char *err, size_t errlen, const char *fmt, va_list ap)
{
	if (err == NULL || errlen == 0)
		return;
	vsnprintf(err, errlen, fmt, ap);
}

void
terni_errf(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	terni_verrf(err, errlen, fmt, ap);
	va_end(ap);
}

const char *
tern_strerror(int err)
{
	switch (err) {
	case 0:
		return "success";
#define XX(name, value, msg)                                                                       \
	case TERN_##name:                                                                          \
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
#define XX(name, value, msg)                                                                       \
	case TERN_##name:                                                                          \
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
