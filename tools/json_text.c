/*
 * tools_json_text (tools/json_text.h): the tools' one UTF-8-safe JSON string
 * helper, so that a label or message mangled in a trace file or a child's
 * output still reaches the report, readable where it was valid.
 */
#include <stdlib.h>
#include <string.h>

#include "tools/json_text.h"

/* json_utf8_len is the length of the valid UTF-8 sequence at p (1 to 4), 0
 * when the bytes there are not one (RFC 3629: no overlong forms, no
 * surrogates, nothing above U+10FFFF). */
static size_t
json_utf8_len(const unsigned char *p)
{
	unsigned char c = p[0];
	size_t n;
	unsigned char lo = 0x80, hi = 0xbf; /* bounds of the second byte */

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		if (c == 0xe0)
			lo = 0xa0; /* overlong */
		else if (c == 0xed)
			hi = 0x9f; /* surrogates */
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		if (c == 0xf0)
			lo = 0x90; /* overlong */
		else if (c == 0xf4)
			hi = 0x8f; /* above U+10FFFF */
	} else
		return 0;
	if (p[1] < lo || p[1] > hi)
		return 0;
	/* The string's NUL is not a continuation byte: no read past it. */
	for (size_t i = 2; i < n; i++)
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	return n;
}

json_t *
tools_json_text(const char *s)
{
	if (s == NULL)
		return json_null();
	json_t *j = json_string(s);
	if (j != NULL)
		return j;
	/* Invalid UTF-8 (or out of memory): mend it byte by byte. */
	size_t len = strlen(s);
	char *c = malloc(len + 1);
	if (c == NULL)
		return NULL;
	const unsigned char *p = (const unsigned char *)s;
	size_t o = 0;
	while (*p != '\0') {
		size_t n = json_utf8_len(p);
		if (n == 0) {
			c[o++] = '?';
			p++;
			continue;
		}
		memcpy(c + o, p, n);
		o += n;
		p += n;
	}
	c[o] = '\0';
	j = json_string(c);
	free(c);
	return j;
}
