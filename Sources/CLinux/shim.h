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
