/* Linux calls that glibc declares only under _GNU_SOURCE, which Swift's Glibc module does not set. */
int syncfs(int fd);
int sync_file_range(int fd, long long offset, long long nbytes, unsigned int flags);
#define MREPO_SYNC_FILE_RANGE_WRITE 2

/* glibc's malloc tuning (malloc.h). */
int mallopt(int param, int value);
#define MREPO_M_TRIM_THRESHOLD (-1)
#define MREPO_M_MMAP_THRESHOLD (-3)
