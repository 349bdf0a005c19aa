/* A file mapping whose file shrinks while it is read (a trainer rewriting its checkpoint during a
 * commit) raises SIGBUS on the pages past the new end, which would kill mrepo with a crash report.
 * Mappings registered here are guarded instead: the handler puts a page of zeros where the fault
 * was, marks the mapping, and lets the reader go on; the caller then finds the file changed (its
 * size differs from the one it mapped) and reports that in one line. Faults outside these
 * mappings go to the handler that was there before (the Swift runtime's crash report), or end the
 * process as SIGBUS does by default.
 *
 * The handler only reads a fixed table and calls mmap, which Linux performs safely in a signal
 * handler (POSIX does not list it as async-signal-safe; no lock of the process's is involved). */
#include "ckernels.h"

#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define GUARD_SLOTS 1024

static _Atomic(uintptr_t) guard_start[GUARD_SLOTS];
static _Atomic(uintptr_t) guard_end[GUARD_SLOTS];
static _Atomic(int) guard_hit[GUARD_SLOTS];
static struct sigaction guard_previous;
static _Atomic(int) guard_installed;
static uintptr_t guard_page = 4096;

static void guard_on_sigbus(int sig, siginfo_t *info, void *context) {
    uintptr_t address = (uintptr_t)info->si_addr;
    /* Only an access past the end of the file (BUS_ADRERR); an I/O or memory error is not a shrink. */
    for (int i = 0; info->si_code == BUS_ADRERR && i < GUARD_SLOTS; i++) {
        uintptr_t start = atomic_load(&guard_start[i]);
        if (start == 0 || address < start || address >= atomic_load(&guard_end[i])) continue;
        void *page = (void *)(address & ~(guard_page - 1));
        if (mmap(page, guard_page, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != MAP_FAILED) {
            atomic_store(&guard_hit[i], 1);
            return; /* the load runs again, and reads zeros */
        }
        break;
    }
    if ((guard_previous.sa_flags & SA_SIGINFO) && guard_previous.sa_sigaction) {
        guard_previous.sa_sigaction(sig, info, context);
        return;
    }
    if (!(guard_previous.sa_flags & SA_SIGINFO) && guard_previous.sa_handler != SIG_DFL && guard_previous.sa_handler != SIG_IGN) {
        guard_previous.sa_handler(sig);
        return;
    }
    /* The default: returning faults again, and the process ends by SIGBUS. */
    signal(SIGBUS, SIG_DFL);
}

void mrepo_guard_install(void) {
    int expected = 0;
    if (!atomic_compare_exchange_strong(&guard_installed, &expected, 1)) return;
    long page = sysconf(_SC_PAGESIZE);
    if (page > 0) guard_page = (uintptr_t)page;
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = guard_on_sigbus;
    action.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&action.sa_mask);
    sigaction(SIGBUS, &action, &guard_previous);
    /* A blocked SIGBUS from a fault is not delivered to a handler: the kernel ends the process.
     * Threads started from here on inherit the unblocked mask. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGBUS);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
}

int mrepo_guard_mapping(const void *start, size_t length) {
    mrepo_guard_install();
    if (start == NULL || length == 0) return -1;
    for (int i = 0; i < GUARD_SLOTS; i++) {
        uintptr_t expected = 0;
        if (atomic_compare_exchange_strong(&guard_start[i], &expected, (uintptr_t)-1)) {
            atomic_store(&guard_hit[i], 0);
            atomic_store(&guard_end[i], (uintptr_t)start + length);
            atomic_store(&guard_start[i], (uintptr_t)start);
            return i;
        }
    }
    return -1; /* every slot taken: this mapping goes unguarded */
}

int mrepo_mapping_shrank(int slot) {
    return slot >= 0 && slot < GUARD_SLOTS ? atomic_load(&guard_hit[slot]) : 0;
}

void mrepo_unguard_mapping(int slot) {
    if (slot < 0 || slot >= GUARD_SLOTS) return;
    atomic_store(&guard_end[slot], 0);
    atomic_store(&guard_start[slot], 0);
}
