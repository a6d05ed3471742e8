/* tools_json_text (tools/json_text.h): valid UTF-8 kept, each byte outside
 * a valid sequence shown as '?', NULL as JSON null. */
#include <criterion/criterion.h>
#include <jansson.h>

#include "tools/json_text.h"

static const struct {
	const char *in, *out;
} json_text_cases[] = {
    {"plain ascii", "plain ascii"},
    {"caf\xc3\xa9", "caf\xc3\xa9"},                /* valid: untouched */
    {"\xff", "?"},                                 /* never a UTF-8 byte */
    {"caf\xc3\xa9 \xff", "caf\xc3\xa9 ?"},         /* mended, é kept */
    {"\x80x", "?x"},                               /* stray continuation */
    {"\xe2\x82", "??"},                            /* truncated at the end */
    {"\xe2\x82x", "??x"},                          /* truncated mid-string */
    {"\xc0\xaf", "??"},                            /* overlong '/' */
    {"\xed\xa0\x80", "???"},                       /* a surrogate */
    {"\xf4\x90\x80\x80", "????"},                  /* above U+10FFFF */
    {"\xf0\x9f\x98\x80\xfe", "\xf0\x9f\x98\x80?"}, /* 4 bytes kept */
};

Test(json_text, mends_only_invalid_bytes)
{
	for (size_t i = 0; i < sizeof(json_text_cases) / sizeof(json_text_cases[0]); i++) {
		json_t *j = tools_json_text(json_text_cases[i].in);
		cr_assert_not_null(j, "case %zu", i);
		cr_assert(json_is_string(j), "case %zu", i);
		cr_assert_str_eq(json_string_value(j), json_text_cases[i].out, "case %zu", i);
		json_decref(j);
	}
}

Test(json_text, null_is_json_null)
{
	json_t *j = tools_json_text(NULL);
	cr_assert(json_is_null(j));
	json_decref(j);
}
