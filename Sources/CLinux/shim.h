/* Linux calls that glibc declares only under _GNU_SOURCE, which Swift's Glibc module does not set. */
int syncfs(int fd);
int sync_file_range(int fd, long long offset, long long nbytes, unsigned int flags);
#define MREPO_SYNC_FILE_RANGE_WRITE 2

/* glibc's malloc tuning (malloc.h). */
int mallopt(int param, int value);
#define MREPO_M_TRIM_THRESHOLD (-1)
#define MREPO_M_MMAP_THRESHOLD (-3)

/* FICLONE (linux/fs.h): make a file share another's extents (Btrfs, XFS, bcachefs). The request is
   a macro Swift cannot import, and ioctl is variadic. */
#include <sys/ioctl.h>
static inline int mrepo_ficlone(int destination, int source) { return ioctl(destination, 0x40049409, source); }

/* open(folder, O_TMPFILE | O_RDWR | O_CLOEXEC): an unnamed file on the folder's file system, gone when closed.
   O_TMPFILE is declared only under _GNU_SOURCE, and its value differs by architecture; elsewhere the
   call fails and callers do without. */
#include <fcntl.h>
static inline int mrepo_open_unnamed(const char *folder) {
#if defined(__x86_64__)
    return open(folder, 020200000 | O_RDWR | O_CLOEXEC, 0600);
#elif defined(__aarch64__)
    return open(folder, 020040000 | O_RDWR | O_CLOEXEC, 0600);
#else
    (void)folder;
    return -1;
#endif
}

/* posix_spawn_file_actions_addchdir_np (glibc 2.29): the child starts in a folder of its own
   choosing, without the parent's chdir (which would move every thread). Declared only under
   _GNU_SOURCE. */
#include <spawn.h>
int posix_spawn_file_actions_addchdir_np(posix_spawn_file_actions_t *actions, const char *path);
/* posix_spawn_file_actions_addclosefrom_np (glibc 2.34): the child starts with no descriptor from
   `from` up, so a command mrepo runs (and what it leaves running) holds none of mrepo's files or
   locks. Declared only under _GNU_SOURCE. */
int posix_spawn_file_actions_addclosefrom_np(posix_spawn_file_actions_t *actions, int from);

/* renameat2(RENAME_NOREPLACE) (Linux 3.15, glibc 2.28): rename unless the new name exists, in one
   step. Declared only under _GNU_SOURCE. Fails with EINVAL on a file system without it (callers
   then link and unlink). */
#include <stdio.h>
int renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned int flags);
static inline int mrepo_rename_noreplace(const char *from, const char *to) {
    return renameat2(AT_FDCWD, from, AT_FDCWD, to, 1 /* RENAME_NOREPLACE */);
}
