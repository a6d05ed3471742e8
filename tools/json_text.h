/*
 * One JSON string helper for the tools (tern-bench's report, tern-trace's
 * Perfetto export and HTML report): a C string that may come from anywhere
 * (a trace file, a process's output) becomes a jansson string, whose
 * constructor refuses invalid UTF-8.  Shared so that both tools mend broken
 * text the same way.
 */
#ifndef TERN_TOOLS_JSON_TEXT_H
#define TERN_TOOLS_JSON_TEXT_H

#include <jansson.h>

/* tools_json_text returns s as a new JSON string: valid UTF-8 unchanged,
 * each byte that does not belong to a valid UTF-8 sequence (a stray
 * continuation, a truncated or overlong sequence, a surrogate, a code point
 * above U+10FFFF) as '?'.  A NULL s is JSON null.  NULL when out of memory. */
json_t *tools_json_text(const char *s);

#endif /* TERN_TOOLS_JSON_TEXT_H */
