#ifndef C_SQUARES_SYSTEM_H
#define C_SQUARES_SYSTEM_H

// GNU extensions that Swift's Glibc module does not export (they need _GNU_SOURCE): the
// worker's only system calls not reachable from Swift directly (a memfd's seals among them), and
// memfd_create for its tests.

/// The CPUs in this thread's affinity mask (taskset, a container's cpuset), or 0 where unknown.
int csquares_affinity_cpu_count(void);

/// fcntl(fd, F_SETPIPE_SZ, bytes): the pipe's new capacity, or -1 and errno (ENOSYS off Linux).
int csquares_set_pipe_size(int fd, int bytes);

/// memfd_create(name, MFD_CLOEXEC), with MFD_ALLOW_SEALING when allow_sealing is nonzero: an
/// anonymous memory file, as a client of the shared-memory plane makes one (the worker's tests
/// make their segments with it); -1 and errno where Linux lacks it.
int csquares_memfd_create(const char *name, int allow_sealing);

/// F_SEAL_SEAL, F_SEAL_SHRINK, F_SEAL_GROW, F_SEAL_WRITE (0 where Linux's seals are missing).
extern const int csquares_seal_seal;
extern const int csquares_seal_shrink;
extern const int csquares_seal_grow;
extern const int csquares_seal_write;

/// fcntl(fd, F_GET_SEALS): the file's seals; -1 and errno (EINVAL: a file that takes no seals).
/// A memfd made without MFD_ALLOW_SEALING reports F_SEAL_SEAL alone.
int csquares_get_seals(int fd);

/// fcntl(fd, F_ADD_SEALS, seals): 0, or -1 and errno (the tests seal their segments with it).
int csquares_add_seals(int fd, int seals);

#endif
