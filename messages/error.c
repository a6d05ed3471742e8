/* tern_strerror & co, generated from TERN_ERRNO_MAP. */
#include <errno.h>
#include <nng/nng.h>
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

int
tern_from_nng(int nng_err)
{
	if (nng_err == 0)
		return 0;
	switch (nng_err) {
	case NNG_ETIMEDOUT:
		return TERN_ETIMEDOUT;
	case NNG_ECLOSED:
		return TERN_ECLOSED;
	case NNG_ENOMEM:
		return TERN_ENOMEM;
	case NNG_ECANCELED:
		return TERN_ECANCELED;
	case NNG_EINVAL:
		return TERN_EINVAL;
	default:
		break;
	}
	if (nng_err & NNG_ESYSERR)
		return -(nng_err & ~NNG_ESYSERR);
	return TERN_ENNG;
}
