/*
 * libtern exports exactly its public API: every dynamic symbol it defines is
 * declared TERN_EXTERN in include/tern/, and the runtime's internals
 * (tern_spawn, the codecs, the guest backends, ...) are not visible to a
 * VMM that links it.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tern/tern.h"

/* The public headers, concatenated. */
static char *
public_headers(void)
{
	static const char *const files[] = {"tern.h", "error.h", "guest.h"};
	size_t cap = 1 << 20, len = 0;
	char *all = calloc(1, cap);
	cr_assert_not_null(all);
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		char path[512];
		snprintf(path, sizeof(path), "%s/include/tern/%s", TERN_SOURCE_DIR, files[i]);
		FILE *f = fopen(path, "r");
		cr_assert_not_null(f, "cannot open %s", path);
		len += fread(all + len, 1, cap - 1 - len, f);
		fclose(f);
	}
	return all;
}

/* Whether name is declared TERN_EXTERN ("TERN_EXTERN ... name(") in text. */
static int
declared_public(const char *text, const char *name)
{
	char pat[512];
	snprintf(pat, sizeof(pat), "%s(", name);
	for (const char *p = strstr(text, pat); p != NULL; p = strstr(p + 1, pat)) {
		const char *line = p;
		while (line > text && line[-1] != '\n')
			line--;
		if (strncmp(line, "TERN_EXTERN ", 12) == 0 &&
		    (p == text || p[-1] == ' ' || p[-1] == '*'))
			return 1;
	}
	return 0;
}

Test(exports, only_the_public_api)
{
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "nm -D --defined-only '%s'", TERN_LIB_PATH);
	FILE *nm = popen(cmd, "r");
	cr_assert_not_null(nm);
	char *headers = public_headers();
	char line[512];
	int exported = 0, bad = 0;
	while (fgets(line, sizeof(line), nm) != NULL) {
		char addr[64], type[8], name[400];
		if (sscanf(line, "%63s %7s %399s", addr, type, name) != 3)
			continue;
		/* Code and data only (not the linker's own markers). */
		if (strchr("TDBR", type[0]) == NULL)
			continue;
		if (strncmp(name, "_init", 5) == 0 || strncmp(name, "_fini", 5) == 0)
			continue;
		exported++;
		if (!declared_public(headers, name)) {
			fprintf(stderr, "exported but not public: %s\n", name);
			bad++;
		}
	}
	cr_assert_eq(pclose(nm), 0, "%s failed", cmd);
	free(headers);
	cr_assert_gt(exported, 3, "nm found only %d symbols in %s", exported, TERN_LIB_PATH);
	cr_assert_eq(bad, 0, "%d internal symbols exported by libtern (see stderr)", bad);
}

Test(exports, version_matches_the_header)
{
	char want[32];
	snprintf(want, sizeof(want), "%d.%d.%d", TERN_VERSION_MAJOR, TERN_VERSION_MINOR,
	         TERN_VERSION_PATCH);
	cr_assert_str_eq(tern_version(), want);
}

Test(exports, codes_are_negative_errno_where_one_exists)
{
	/* libuv's rule: a caller can compare with -errno directly. */
	cr_assert_eq(TERN_EINVAL, -EINVAL);
	cr_assert_eq(TERN_ENOMEM, -ENOMEM);
	cr_assert_eq(TERN_ETIMEDOUT, -ETIMEDOUT);
	cr_assert_eq(TERN_ECANCELED, -ECANCELED);
	cr_assert_eq(TERN_ENOTSUP, -ENOTSUP);
	cr_assert_eq(TERN_EPROTO, -EPROTO);
	cr_assert_eq(TERN_ERANGE, -ERANGE);
	cr_assert_eq(TERN_EMSG, -EBADMSG);
	/* tern's own conditions sit far below every errno. */
	cr_assert_lt(TERN_EKILLED, -4096);
	cr_assert_str_eq(tern_err_name(TERN_EKILLED), "TERN_EKILLED");
	cr_assert_str_eq(tern_err_name(-ENOENT), "ENOENT");
	cr_assert_str_eq(tern_strerror(TERN_ETIMEDOUT), "timed out");
}
