/* A signal that arrives while an evaluation is being spawned, before its process group is in
 * the table of evaluations to end (EvaluationRunner.swift, LiveEvaluations), would leave it running
 * orphaned. The handler and the spawner agree through two sequentially consistent atomics (as in
 * Dekker's algorithm): the handler notes the signal, then looks whether a spawn is in progress; the
 * spawner adds the new group to the table, ends its spawn, then looks whether a signal was noted.
 * One of the two always sees the other: either the handler finds no spawn in progress (and the
 * group, added before, is in the table) or the last spawner to finish finds the signal and ends
 * every group itself. */
#include "ckernels.h"

#include <stdatomic.h>

static atomic_int spawns_in_progress;
static atomic_int noted_signal;

void mrepo_spawn_begin(void) { atomic_fetch_add(&spawns_in_progress, 1); }

int mrepo_spawn_end(void) {
    int left = atomic_fetch_sub(&spawns_in_progress, 1) - 1;
    int signal = atomic_load(&noted_signal);
    return left == 0 ? signal : 0;
}

int mrepo_signal_defers(int signal) {
    atomic_store(&noted_signal, signal);
    return atomic_load(&spawns_in_progress) > 0;
}
