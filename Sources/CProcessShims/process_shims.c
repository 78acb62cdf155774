#define _GNU_SOURCE
#include "process_shims.h"

#if defined(__linux__)
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

int csmr_exit_with_parent(void) { return prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0); }

/* On Linux a thread is a task: setpriority on its thread id changes that thread alone. */
int csmr_lower_thread_priority(void) { return setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 19); }
#else
int csmr_exit_with_parent(void) { return 0; }
int csmr_lower_thread_priority(void) { return 0; }
#endif
