#ifndef CSMR_PROCESS_SHIMS_H
#define CSMR_PROCESS_SHIMS_H

/// Asks the kernel to send SIGKILL to this process when its parent exits (Linux; elsewhere a
/// no-op). Returns 0 on success.
int csmr_exit_with_parent(void);

#endif
