/* Option structs' defaults (tern.h): a zeroed struct means "defaults" for
 * every field today; these functions keep callers right when a later field
 * needs a non-zero default. */
#include <string.h>

#include "tern/tern.h"

void
tern_send_opts_init(struct tern_send_opts *opts)
{
	memset(opts, 0, sizeof(*opts));
	opts->zero_pages = TERN_ZERO_DETECT;
	opts->auto_converge = TERN_CONVERGE_OFF;
}

void
tern_recv_opts_init(struct tern_recv_opts *opts)
{
	memset(opts, 0, sizeof(*opts));
	opts->ready_fd = -1;
}
