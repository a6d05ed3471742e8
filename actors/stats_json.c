/*
 * tern_stats_json: a migration's statistics as one JSON object, built with
 * jansson.  The field names, their order and their types are an interface:
 * `tern send/receive --json`, tern-bench and the tests read them.  Output is
 * compact ("name":value, no spaces) because the tests look for exact
 * `"outcome":"completed"` substrings.
 */
#include <jansson.h>
#include <stdint.h>
#include <string.h>

#include "tern/tern.h"

/* jansson integers are signed 64-bit.  No real counter comes near 2^63; a
 * "no figure" sentinel such as UINT64_MAX stays a huge positive number. */
static int
stats_u64(json_t *o, const char *key, uint64_t v)
{
	return json_object_set_new(o, key, json_integer(v > INT64_MAX ? INT64_MAX : (json_int_t)v));
}

static int
stats_bool(json_t *o, const char *key, int v)
{
	return json_object_set_new(o, key, json_boolean(v));
}

/* A C string that may hold anything (a reason built from an error line):
 * jansson refuses invalid UTF-8, so bytes outside printable ASCII become
 * spaces, as the hand-written writer did with control characters. */
static json_t *
stats_text(const char *s, size_t max)
{
	char clean[512];
	size_t n = strnlen(s, max < sizeof(clean) - 1 ? max : sizeof(clean) - 1);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		clean[i] = c >= 0x20 && c < 0x7f ? (char)c : ' ';
	}
	clean[n] = '\0';
	return json_string(clean);
}

static json_t *
stats_conns(const struct tern_stats *s)
{
	json_t *a = json_array();
	for (uint32_t i = 0; a != NULL && i < s->connections && i < TERN_MAX_CONNECTIONS; i++) {
		const struct tern_conn_stats *c = &s->conn[i];
		json_t *o = json_object();
		if (o == NULL || json_array_append_new(a, o) != 0) {
			json_decref(a);
			return NULL;
		}
		int rc = stats_u64(o, "bytes", c->bytes);
		rc |= stats_u64(o, "payload_bytes", c->payload);
		rc |= stats_u64(o, "chunks", c->chunks);
		rc |= stats_u64(o, "active_ms", c->active_ms);
		rc |= stats_u64(o, "throughput_bps",
		                c->active_ms ? c->payload * 1000 / c->active_ms : 0);
		rc |= stats_bool(o, "lost", c->lost);
		if (rc != 0) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

static json_t *
stats_object(const struct tern_stats *s)
{
	json_t *o = json_object();
	if (o == NULL)
		return NULL;
	int rc = json_object_set_new(o, "outcome", stats_text(s->outcome, sizeof(s->outcome)));
	rc |= stats_u64(o, "total_ms", s->total_ms);
	rc |= stats_u64(o, "downtime_ms", s->downtime_ms);
	rc |= stats_u64(o, "expected_downtime_ms", s->expected_downtime_ms);
	rc |= stats_u64(o, "downtime_limit_ms", s->downtime_limit_ms);
	rc |= stats_u64(o, "guest_build_ms", s->guest_build_ms);
	rc |= stats_u64(o, "populate_ms", s->populate_ms);
	rc |= stats_bool(o, "postcopy", s->postcopy);
	if (s->postcopy) {
		rc |=
		    json_object_set_new(o, "postcopy_reason",
		                        stats_text(s->postcopy_reason, sizeof(s->postcopy_reason)));
		rc |= stats_u64(o, "postcopy_pages", s->postcopy_pages);
		rc |= stats_u64(o, "postcopy_urgent_pages", s->postcopy_urgent_pages);
		rc |= stats_u64(o, "postcopy_faults", s->postcopy_faults);
		rc |= stats_u64(o, "postcopy_zero_pages", s->postcopy_zero_pages);
		rc |= stats_u64(o, "postcopy_requests", s->postcopy_requests);
		rc |= stats_u64(o, "postcopy_fault_p50_us", s->postcopy_fault_p50_us);
		rc |= stats_u64(o, "postcopy_fault_p99_us", s->postcopy_fault_p99_us);
		rc |= stats_u64(o, "postcopy_fault_max_us", s->postcopy_fault_max_us);
		rc |= stats_u64(o, "postcopy_ms", s->postcopy_ms);
		rc |= stats_u64(o, "postcopy_pauses", s->postcopy_pauses);
		rc |= stats_u64(o, "postcopy_recover_ms", s->postcopy_recover_ms);
	}
	rc |= stats_u64(o, "verify_ms", s->verify_ms);
	rc |= stats_u64(o, "bytes_sent", s->bytes_sent);
	rc |= stats_u64(o, "payload_bytes", s->payload_bytes);
	rc |= stats_u64(o, "pages_sent", s->pages_sent);
	rc |= stats_u64(o, "pages_skipped", s->pages_skipped);
	rc |= stats_u64(o, "iterations", s->iterations);
	rc |= stats_u64(o, "final_pages", s->final_pages);
	rc |= stats_u64(o, "dirty_rate_pps", s->dirty_rate_pps);
	rc |= stats_u64(o, "bandwidth_bps", s->bandwidth_bps);
	rc |= stats_u64(o, "pause_latency_us", s->pause_latency_us);
	rc |= stats_u64(o, "connections", s->connections);
	rc |= stats_bool(o, "verified", s->verified);
	rc |= stats_bool(o, "handoff_unknown", s->handoff_unknown);
	rc |= stats_bool(o, "source_resume_failed", s->source_resume_failed);
	rc |= stats_u64(o, "workload_progress_at_resume", s->workload_progress_at_resume);
	rc |= stats_u64(o, "workload_progress_after", s->workload_progress_after);
	/* -1 violated, 0 not checked, 1 held: a number, not a boolean. */
	rc |= json_object_set_new(o, "workload_ok", json_integer(s->workload_ok));
	rc |= stats_u64(o, "throttle_pct", s->throttle_pct);
	rc |= stats_u64(o, "throttle_max_pct", s->throttle_max_pct);
	rc |= stats_u64(o, "switchover_retries", s->switchover_retries);
	rc |= stats_bool(o, "stalled", s->stalled);
	rc |= json_object_set_new(o, "stall_reason",
	                          stats_text(s->stall_reason, sizeof(s->stall_reason)));
	rc |= stats_u64(o, "ring_pass_pages", s->ring_pass_pages);
	rc |= stats_u64(o, "transfer_ms", s->transfer_ms);
	rc |= stats_u64(o, "pages_zero", s->pages_zero);
	rc |= stats_u64(o, "pages_scanned", s->pages_scanned);
	rc |= stats_u64(o, "pages_scan_skipped", s->pages_scan_skipped);
	rc |= stats_u64(o, "zero_scan_ms", s->zero_scan_ms);
	rc |= stats_u64(o, "connections_lost", s->connections_lost);
	rc |= stats_u64(o, "chunks_requeued", s->chunks_requeued);
	rc |= stats_u64(o, "connections_fenced", s->connections_fenced);
	rc |= stats_u64(o, "state_bytes", s->state_bytes);
	rc |= stats_u64(o, "state_save_ms", s->state_save_ms);
	rc |= stats_u64(o, "state_bytes_expected", s->state_bytes_expected);
	rc |= stats_u64(o, "cpu_user_ms", s->cpu_user_ms);
	rc |= stats_u64(o, "cpu_sys_ms", s->cpu_sys_ms);
	rc |= json_object_set_new(o, "conns", stats_conns(s));
	if (rc != 0) {
		json_decref(o);
		return NULL;
	}
	return o;
}

int
tern_stats_json(const struct tern_stats *s, char *buf, size_t len)
{
	if (s == NULL || buf == NULL || len == 0)
		return TERN_EINVAL;
	json_t *o = stats_object(s);
	if (o == NULL)
		return TERN_ENOMEM;
	/* json_dumpb returns the size it needs and writes no terminator. */
	size_t n = json_dumpb(o, buf, len, JSON_COMPACT);
	json_decref(o);
	if (n == 0 || n >= len)
		return TERN_EINVAL;
	buf[n] = '\0';
	return 0;
}
