#ifndef C_SQUARES_SYSTEM_H
#define C_SQUARES_SYSTEM_H

// GNU extensions that Swift's Glibc module does not export (they need _GNU_SOURCE): the
// worker's only system calls not reachable from Swift directly.

/// The CPUs in this thread's affinity mask (taskset, a container's cpuset), or 0 where unknown.
int csquares_affinity_cpu_count(void);

/// Names the calling thread (Linux keeps the first 15 bytes); best effort.
void csquares_set_thread_name(const char *name);

#endif
