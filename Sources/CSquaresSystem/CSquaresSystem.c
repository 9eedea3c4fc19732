#define _GNU_SOURCE
#include "CSquaresSystem.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <string.h>
#ifdef __linux__
#include <sys/mman.h>
#endif

int csquares_affinity_cpu_count(void) {
#ifdef __linux__
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) == 0) return CPU_COUNT(&set);
#endif
    return 0;
}

int csquares_set_pipe_size(int fd, int bytes) {
#if defined(__linux__) && defined(F_SETPIPE_SZ)
    return fcntl(fd, F_SETPIPE_SZ, bytes);
#else
    (void)fd;
    (void)bytes;
    errno = ENOSYS;
    return -1;
#endif
}

int csquares_memfd_create(const char *name, int allow_sealing) {
#if defined(__linux__) && defined(MFD_CLOEXEC) && defined(MFD_ALLOW_SEALING)
    return memfd_create(name, MFD_CLOEXEC | (allow_sealing ? MFD_ALLOW_SEALING : 0));
#else
    (void)name;
    (void)allow_sealing;
    errno = ENOSYS;
    return -1;
#endif
}

#if defined(__linux__) && defined(F_GET_SEALS)
const int csquares_seal_seal = F_SEAL_SEAL;
const int csquares_seal_shrink = F_SEAL_SHRINK;
const int csquares_seal_grow = F_SEAL_GROW;
const int csquares_seal_write = F_SEAL_WRITE;

int csquares_get_seals(int fd) { return fcntl(fd, F_GET_SEALS); }

int csquares_add_seals(int fd, int seals) { return fcntl(fd, F_ADD_SEALS, seals); }
#else
const int csquares_seal_seal = 0;
const int csquares_seal_shrink = 0;
const int csquares_seal_grow = 0;
const int csquares_seal_write = 0;

int csquares_get_seals(int fd) {
    (void)fd;
    errno = ENOSYS;
    return -1;
}

int csquares_add_seals(int fd, int seals) {
    (void)fd;
    (void)seals;
    errno = ENOSYS;
    return -1;
}
#endif
