#ifndef C_SQUARES_SYSTEM_H
#define C_SQUARES_SYSTEM_H

// GNU extensions that Swift's Glibc module does not export (they need _GNU_SOURCE): the
// worker's only system calls not reachable from Swift directly, and memfd_create for its tests.

/// The CPUs in this thread's affinity mask (taskset, a container's cpuset), or 0 where unknown.
int csquares_affinity_cpu_count(void);

/// Names the calling thread (Linux keeps the first 15 bytes); best effort.
void csquares_set_thread_name(const char *name);

/// memfd_create(name, MFD_CLOEXEC): an anonymous memory file, as a client of the shared-memory
/// plane makes one (the worker's tests make their segments with it); -1 and errno where Linux
/// lacks it.
int csquares_memfd_create(const char *name);

#endif
