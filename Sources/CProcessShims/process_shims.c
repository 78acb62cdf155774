#include "process_shims.h"

#if defined(__linux__)
#include <signal.h>
#include <sys/prctl.h>

int csmr_exit_with_parent(void) { return prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0); }
#else
int csmr_exit_with_parent(void) { return 0; }
#endif
