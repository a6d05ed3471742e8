/*
 * The options of `tern send`, `tern receive` and `tern demo`: one table of
 * which command takes which option (a send-only option given to receive is
 * an error), parsed into libtern's own option structs.
 */
#ifndef TERN_TOOLS_CLI_OPTS_H
#define TERN_TOOLS_CLI_OPTS_H

#include <stdio.h>

#include "tern/tern.h"

#define DEMO_GUEST                                                                                 \
	"simvm:mem=1G,vcpus=2,fill=random,workload=memtouch:ws=256M,rate=200M,pattern=random"

/* Which commands take an option. */
enum { FOR_SEND = 1, FOR_RECV = 2, FOR_DEMO = 4, FOR_ALL = 7 };

struct cli {
	struct tern_send_opts send;
	struct tern_recv_opts recv;
	int json;
};

/* cli_usage prints `tern --help`. */
void cli_usage(FILE *f);

/* cli_bad_usage prints "tern: REASON" and the hint to stderr; returns 2. */
int cli_bad_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* cli_parse_opts parses the options of command `scope` (FOR_*) into c
 * (initialised by the caller); returns 0, or 2 on bad usage (said). */
int cli_parse_opts(int argc, char **argv, struct cli *c, unsigned scope, const char *cmd);

#endif /* TERN_TOOLS_CLI_OPTS_H */
