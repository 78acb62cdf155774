#ifndef CSMR_PROCESS_SHIMS_H
#define CSMR_PROCESS_SHIMS_H

/// Asks the kernel to send SIGKILL to this process when its parent exits (Linux; elsewhere a
/// no-op). Returns 0 on success.
int csmr_exit_with_parent(void);

/// Gives the calling thread (only it) the lowest scheduling priority (nice 19 on Linux; elsewhere
/// a no-op), so background work takes idle CPU and not a replica's event loop's. Returns 0 on
/// success.
int csmr_lower_thread_priority(void);

#endif
