/*
 * tern-trace's analysis (trace_analysis.c): what every output derives from
 * the loaded records (series, phases, iterations, connections), kept apart
 * from loading (trace_model.c) and from the outputs.  Included by
 * tools/trace_viewer.h, which defines the model.
 */
#ifndef TERN_TOOLS_TRACE_ANALYSIS_H
#define TERN_TOOLS_TRACE_ANALYSIS_H

#include <stdint.h>

struct tv_model;
struct tv_series;

/* tv_analyse fills the model's analysis (coordinator, receiver, series,
 * phases, iters, conns) from its records; tv_load calls it once the records
 * are on one time line.  Returns 0 or TERN_ENOMEM (tv_free releases what
 * was built either way). */
int tv_analyse(struct tv_model *m);

/* tv_find_series returns the series `name` of actor (or of any actor when
 * actor is UINT32_MAX), NULL when the trace has none. */
const struct tv_series *tv_find_series(const struct tv_model *m, uint32_t actor, const char *name);

/* tv_state_time is when actor first entered state `name`, -1 if never. */
int64_t tv_state_time(const struct tv_model *m, int64_t actor, const char *name);

#endif /* TERN_TOOLS_TRACE_ANALYSIS_H */
