/*
 * Fault injection at named events, for tests that kill actors, processes or
 * guest calls at exact points of a migration (never at wall-clock times).
 *
 * TERN_FAULT (environment, read once per process) is a comma-separated list
 * of triggers:
 *
 *   trigger = who [ "#" k ] "@" event [ "#" n ]
 *   who     = an actor name: coordinator, dirty-log, throttle, zero-scan,
 *             conn-send, receiver, conn-recv, pc-faults
 *           | "process"   the whole process: SIGKILL itself at the event,
 *                         whichever actor's thread reports it
 *           | "guest"     a call into the guest provider fails (-EIO)
 *           | "link"      cut the link: every connection socket of this
 *                         process is shut down at the event (both ways, as
 *                         a network failure would), nothing is killed
 *   k       = which actor of that name, in spawn order from 0; omitted: any
 *             (then events of every instance count together)
 *   event   = "recv:" TYPE    a message (or, for connection actors and the
 *                             receiver, a wire frame) received: TYPE is a
 *                             message name (DIRTY_TAKE, W_STATE, ...; the
 *                             "W_" of a frame may be left out: ACK = W_ACK)
 *           | "send:" TYPE    a message or wire frame sent
 *           | "state:" NAME   a state entered (coordinator: setup, bulk,
 *                             iterate, switchover, state, verify, handoff,
 *                             completed; receiver: configured, state,
 *                             resumed, aborted)
 *           | "chunk"         a chunk taken from the work queue (conn-send,
 *                             zero-scan); "chunk:N" is the same as "chunk#N"
 *           | "iteration"     the coordinator starts a pass over memory (the
 *                             bulk pass is the 1st, dirty iterations follow)
 *           | "fault"         a guest page fault read by the postcopy fault
 *                             handler (pc-faults); "fault:N" = "fault#N"
 *           | "pause" | "resume" | "save" | "load" | "dirty_start"
 *           | "harvest"       guest calls ("guest"): the call fails (-EIO)
 *   n       = fire at the n-th such event (from 1; default 1)
 *
 * Each trigger fires once per process.  Examples:
 *   conn-send#1@chunk:3             the second connection, at its 3rd chunk
 *   dirty-log@recv:DIRTY_TAKE#2     the dirty-log actor, 2nd DIRTY_TAKE
 *   coordinator@state:iterate#2     the coordinator entering iterate twice
 *   conn-recv#0@send:ACK#5          connection 0, at its 5th W_ACK sent
 *   process@state:switchover        SIGKILL the process at the switchover
 *   guest@resume                    the first guest resume fails
 *   link@recv:W_PAGE_REQ#3          every connection cut at the 3rd page
 *                                   request (postcopy recovery)
 *
 * Every trigger that fires prints one line on stderr,
 *   "tern: fault fired: conn-send#1@chunk:3 (conn-send#1, id 9)"
 * and is recorded in the trace (TERN_TRACE_FAULT), so a test asserts that its
 * fault fired instead of guessing.  A malformed TERN_FAULT is reported on
 * stderr once and ignored as a whole.
 */
#ifndef TERN_ACTORS_FAULT_H
#define TERN_ACTORS_FAULT_H

#include <stdbool.h>
#include <stdint.h>

struct tern_trace;

enum tern_fault_action {
	TERN_FAULT_NONE = 0,
	TERN_FAULT_KILL = 1,    /* kill the actor the event happened on */
	TERN_FAULT_PROCESS = 2, /* SIGKILL the process (done by tern_fault_check) */
	TERN_FAULT_FAIL = 3,    /* make the guest call fail */
	TERN_FAULT_CUT = 4,     /* shut down every connection socket of the process */
};

/* tern_fault_enabled is false (and cheap) when TERN_FAULT is unset, so the
 * runtime's hot paths skip everything else. */
bool tern_fault_enabled(void);

/* tern_fault_instance returns the spawn index of a new actor named name
 * (0, 1, ... per name, per process).  Called once per spawn. */
uint32_t tern_fault_instance(const char *name);

/* tern_fault_check reports that event kind[:arg] happened on who#instance
 * (instance is ignored for "guest").  If a trigger fires it prints the stderr
 * line, and for a process trigger SIGKILLs the process (after flushing
 * trace, which may be NULL); otherwise it returns the action for the caller
 * to carry out.  Thread-safe. */
enum tern_fault_action tern_fault_check(const char *who, uint32_t instance, uint32_t id,
                                        const char *kind, const char *arg,
                                        struct tern_trace *trace);

/* tern_fault_reset forgets the parsed list and every count (tests that set
 * TERN_FAULT in-process between cases). */
void tern_fault_reset(void);

#endif /* TERN_ACTORS_FAULT_H */
